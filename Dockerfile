# hotpath server image. Build: docker build -t hotpath .
# Run:   docker run -p 8000:8000 -v hotpath-data:/var/lib/hotpath hotpath
# Agent sidecar (same image): see the README, "Running in containers".

# speedscope comes from its npm package at build time; it is never copied into the repository.
FROM node:20-bookworm-slim AS assets
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error \
 && rm -f node_modules/speedscope/dist/release/perf-vertx-stacks-*.txt

FROM python:3.11-slim-bookworm AS build
WORKDIR /build
RUN python -m venv /opt/hotpath
COPY pyproject.toml README.md ./
# Every folder of the `hotpath` package (pyproject.toml, package-dir).
COPY hotpath hotpath
COPY profiler profiler
COPY agent agent
COPY cli cli
COPY gate gate
COPY server server
# The image is the server (and, as a sidecar, the agent, which the plain install already has).
RUN /opt/hotpath/bin/pip install --no-cache-dir --disable-pip-version-check '.[server]'

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/hotpath hotpath
COPY --from=build /opt/hotpath /opt/hotpath
COPY --from=assets /build/node_modules/speedscope/dist/release /opt/speedscope
COPY --from=assets /build/node_modules/swagger-ui-dist /opt/swagger-ui
ENV PATH=/opt/hotpath/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOTPATH_DATA_DIR=/var/lib/hotpath \
    HOTPATH_SPEEDSCOPE_DIR=/opt/speedscope \
    HOTPATH_SWAGGER_UI_DIR=/opt/swagger-ui
USER hotpath
WORKDIR /var/lib/hotpath
VOLUME ["/var/lib/hotpath"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
CMD ["hotpath", "serve", "--host", "0.0.0.0", "--port", "8000"]
