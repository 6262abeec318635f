# PACS-lite in a container (README.md, "In a container" and "Growing").
#   docker build -t pacs-lite .                        the server: the last stage, built by default
# Written and checked by reading, without a Docker engine to build it.

ARG NODE_VERSION=20

# Debian, not Alpine: the prebuilt binaries of sharp and better-sqlite3 are built for glibc.
FROM node:${NODE_VERSION}-bookworm-slim AS base
WORKDIR /app

# The build: TypeScript compiled to JavaScript in dist/. Compiling needs the dev dependencies' types and tsc, but
# neither the native builds nor OHIF: no install scripts here (prepare, which builds on a developer's `npm ci`, included).
FROM base AS build
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src src
RUN npm run build

# Production dependencies only: no TypeScript, no tsx.
FROM base AS deps
# sharp comes as prebuilt npm packages; better-sqlite3 downloads a prebuilt binary and compiles itself with
# these tools only when it cannot (no binary for the platform, or its download site out of reach).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# npm ci's postinstall fetches the pinned OHIF build from the npm registry into viewer/ohif/dist, checked against its integrity.
COPY viewer/fetch-ohif.mjs viewer/
# prepare builds dist/ with tsc, which --omit=dev leaves out; the build stage has made dist/ already.
RUN npm pkg delete scripts.prepare && npm ci --omit=dev --no-audit --no-fund

# The server. Code and dependencies belong to root and are read-only to the user it runs as.
FROM base AS pacs-lite
COPY --from=deps /app/node_modules node_modules
COPY package.json package-lock.json ./
COPY migrations migrations
COPY --from=build /app/dist dist
# OHIF, served by the server itself on the origin of /dicom-web, with an app-config made from the server's settings.
COPY viewer/app-config.js viewer/
COPY --from=deps /app/viewer/ohif/dist viewer/ohif/dist
# The data folder: objects/, index.sqlite, secrets/ and the upload spool tmp/ on the embedded default;
# only the spool once objects are on S3 and the index on Postgres.
RUN mkdir /data && chown node:node /data
ENV PACS_STORAGE_DIR=/data PORT=8080 HOST=0.0.0.0
VOLUME ["/data"]
USER node
# HTTP, and the DICOM network service (PACS_DICOM_PORT, 11112 by default; unprivileged, so the user node may bind it).
EXPOSE 8080 11112
# Slim images have no curl; Node 20 has fetch. /healthz is 503 while the index or the object store is unusable.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + process.env.PORT + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node itself, not `npm start`: process 1 is then the server, which gets SIGTERM and shuts down cleanly.
CMD ["node", "dist/main.js"]
