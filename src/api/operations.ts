import { accessOperations } from './access.js';
import { applicationEntitiesOperations } from './application-entities.js';
import { imagesOperations } from './images.js';
import { integrityOperations } from './integrity.js';
import { openApiOperations, type Operation } from './openapi.js';
import { photosOperations } from './photos.js';
import { studiesOperations } from './studies.js';
import { trashOperations } from './trash.js';
import { uploadsOperations } from './uploads.js';
import { dicomFilesOperations } from './dicom-files.js';
import { resumableOperations } from './resumable.js';
import { webhooksOperations } from './webhooks.js';

/** Every route under /api/v1, as the OpenAPI document describes it. */
export const API_OPERATIONS: Operation[] = [
  ...studiesOperations,
  ...imagesOperations,
  ...photosOperations,
  ...webhooksOperations,
  ...accessOperations,
  ...applicationEntitiesOperations,
  ...uploadsOperations,
  ...dicomFilesOperations,
  ...resumableOperations,
  ...trashOperations,
  ...integrityOperations,
  ...openApiOperations,
];
