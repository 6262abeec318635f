# PACS-lite in a container (README.md, "In a container" and "Growing").
#   docker build -t pacs-lite .                        the server: the last stage, built by default
# Written and checked by reading, without a Docker engine to build it.

ARG NODE_VERSION=20

# Debian, not Alpine: the prebuilt binaries of sharp and better-sqlite3 are built for glibc.
FROM node:${NODE_VERSION}-bookworm-slim AS base
WORKDIR /app

# Production dependencies only. tsx is one of them: the server runs its TypeScript through tsx, with no build step.
FROM base AS deps
# sharp comes as prebuilt npm packages; better-sqlite3 downloads a prebuilt binary and compiles itself with
# these tools only when it cannot (no binary for the platform, or its download site out of reach).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# npm ci's postinstall fetches the pinned OHIF build from the npm registry into viewer/ohif/dist, checked against its integrity.
COPY viewer/fetch-ohif.ts viewer/
RUN npm ci --omit=dev --no-audit --no-fund

# The server. Code and dependencies belong to root and are read-only to the user it runs as.
FROM base AS pacs-lite
COPY --from=deps /app/node_modules node_modules
COPY package.json package-lock.json ./
COPY migrations migrations
COPY src src
# OHIF, served by the server itself on the origin of /dicom-web, with an app-config made from the server's settings.
COPY viewer/app-config.js viewer/
COPY --from=deps /app/viewer/ohif/dist viewer/ohif/dist
# The data folder: objects/, index.sqlite, secrets/ and the upload spool tmp/ on the embedded default;
# only the spool once objects are on S3 and the index on Postgres.
RUN mkdir /data && chown node:node /data
ENV PACS_STORAGE_DIR=/data PORT=8080 HOST=0.0.0.0
VOLUME ["/data"]
USER node
EXPOSE 8080
# Slim images have no curl; Node 20 has fetch. /healthz is 503 while the index or the object store is unusable.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + process.env.PORT + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# In-process tsx (not `npm start`, whose tsx runs the server in a child): node itself gets SIGTERM and shuts down cleanly.
CMD ["node", "--import", "tsx", "src/main.ts"]
