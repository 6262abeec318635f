/** @type {AppTypes.Config} */

// OHIF v3 configuration for PACS-lite. PACS-lite serves it as /app-config.js with PACS_LITE replaced by its own
// DICOMweb root. For an OHIF hosted elsewhere (PACS_VIEWER_URL), copy it over that viewer's app-config.js, edit
// PACS_LITE below to the address the *browser* reaches PACS-lite at (for example
// 'https://pacs.clinic.local/dicom-web'), and add the viewer's origin to PACS_CORS_ORIGINS on the server.
const PACS_LITE = 'http://localhost:8080/dicom-web';

// Credentials (README.md, "Credentials"). PACS-lite answers no DICOMweb request without one, and this
// OHIF (3.13) cannot be given one here: its DICOMweb data source takes the Authorization header only
// from its user-authentication service, which here only a `?token=` link fills (an OIDC login could too,
// but PACS-lite does not accept OIDC tokens), and never reads `requestOptions.auth`. So:
// - staff: they sign in at PACS-lite's /login, and the session cookie goes with this OHIF's same-origin
//   calls; nothing here (an OHIF on another origin sends no cookie).
// - a staff workstation on a trusted LAN: start PACS-lite with PACS_ANONYMOUS_READ=true; nothing here.
// - the EMR: it asks PACS-lite for a link (GET /api/v1/studies/{uid}/viewer-url); the link's token opens
//   that one study, read-only, for a while.
// Do not put an API key in this file: OHIF would not send it, and anyone who can load the viewer can
// read this file.

window.config = {
  name: 'pacs-lite',
  routerBasename: null,
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  // some Windows systems have trouble with more than 3 web workers
  maxNumberOfWebWorkers: 3,
  showWarningMessageForCrossOrigin: true,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  groupEnabledModesFirst: true,
  maxNumRequests: {
    interaction: 100,
    thumbnail: 5,
    prefetch: 25,
  },
  showErrorDetails: 'always',
  defaultDataSourceName: 'pacs-lite',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'pacs-lite',
      configuration: {
        friendlyName: 'PACS-lite',
        name: 'pacs-lite',
        qidoRoot: PACS_LITE,
        wadoRoot: PACS_LITE,
        wadoUriRoot: PACS_LITE,
        // PACS-lite answers includefield from the stored DICOM JSON, named or `all`.
        qidoSupportsIncludeField: true,
        imageRendering: 'wadors',
        // Thumbnails come rendered from PACS-lite's thumbnail resources (PS3.18 10.4.1.1.4), JPEG, cached
        // server-side: `…/instances/{sop}/thumbnail?viewport=256,256` in the viewer, `…/series/{series}/thumbnail`
        // in the study list. 'fetch' sends them with Accept: image/jpeg and the viewer's credential, and cancels
        // them when the user moves on; 'wadors' would fetch and decode whole frames in the browser instead.
        thumbnailRendering: 'thumbnail',
        thumbnailRequestStrategy: 'fetch',
        enableStudyLazyLoad: true,
        // Person names match case-insensitively per component, with * and ? wildcards.
        supportsFuzzyMatching: true,
        supportsWildcard: true,
        // Metadata and frames come from the index, not from precomputed static files.
        staticWado: false,
        singlepart: 'bulkdata,video',
        // Metadata carries BulkDataURIs instead of inline bulk data; fetch them on demand.
        bulkDataURI: {
          enabled: true,
          relativeResolution: 'studies',
        },
        // Accept: multipart/related; type=application/octet-stream — PACS-lite takes either form.
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
