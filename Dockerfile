# oneoffd and its CLI in a small image with no shell. See docs/deploy.md.
#
#   docker build -t oneoffd .
#   docker run -d -v /var/run/docker.sock:/var/run/docker.sock \
#     --group-add "$(stat -c %g /var/run/docker.sock)" -v oneoffd-data:/data \
#     -p 127.0.0.1:8080:8080 -p 5000:5000 oneoffd
#
# BUILDER_IMAGE: any image with the Go of go.mod and a POSIX shell.
# RUNTIME_IMAGE: any base works, scratch included: everything the daemon
# needs at run time (the binaries, CA certificates, /tmp, /data) comes from
# the build stage. distroless/static adds tzdata and an /etc/passwd.
ARG BUILDER_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
# Modules first, in a layer that only go.mod and go.sum invalidate. They come
# through GOPROXY: the builder image's, or --build-arg GOPROXY=... (a
# file:// one works offline; see docs/deploy.md).
ARG GOPROXY
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# VERSION and COMMIT are what /healthz, --version and the build_info metric
# say: --build-arg VERSION="$(git describe --tags --always)"
#      --build-arg COMMIT="$(git rev-parse --short=12 HEAD)"
ARG VERSION=dev
ARG COMMIT=
# Static binaries: SQLite is the pure-Go modernc driver. The build cache is
# dropped with the layer it would otherwise bloat.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w \
        -X github.com/oneoffd/oneoffd/internal/version.version=${VERSION} \
        -X github.com/oneoffd/oneoffd/internal/version.commit=${COMMIT}" \
        -o /rootfs/usr/local/bin/ ./cmd/oneoffd ./cmd/oneoff \
    && go clean -cache \
    && mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /data && chmod 0700 /data \
    && chmod 1777 /rootfs/tmp \
    && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/

FROM ${RUNTIME_IMAGE}
ARG VERSION=dev
ARG COMMIT=
LABEL org.opencontainers.image.title="oneoffd" \
      org.opencontainers.image.description="One-off containers for a PaaS: the oneoffd daemon and the oneoff CLI" \
      org.opencontainers.image.source="https://github.com/oneoffd/oneoffd" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /rootfs/ /
# The data dir belongs to the daemon's user: uid and gid as numbers, since
# scratch has no /etc/passwd. That user must also be in the group owning the
# engine's socket: --group-add, or group_add in docker-compose.yml.
COPY --from=build --chown=10001:10001 /data /data
ENV PATH=/usr/local/bin:/usr/bin:/bin \
    ONEOFFD_DATA_DIR=/data \
    ONEOFFD_API_ADDR=:8080 \
    ONEOFFD_ATTACH_ADDR=:5000 \
    ONEOFF_API_URL=http://127.0.0.1:8080
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080 5000
# /healthz needs no token. ONEOFF_API_URL is where the CLI in the container
# finds the daemon: change it along with ONEOFFD_API_ADDR.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/oneoff", "health"]
ENTRYPOINT ["/usr/local/bin/oneoffd"]
