# syntax=docker/dockerfile:1
# KetaBridge: a static Go binary on distroless (CA certificates, non-root).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/ketabridge ./cmd/ketabridge \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ketabridge /usr/local/bin/ketabridge
COPY --from=build --chown=nonroot:nonroot /out/data /data
USER nonroot:nonroot
ENV KETABRIDGE_DATA_DIR=/data \
    KETABRIDGE_ADDR=:8080
VOLUME /data
EXPOSE 8080
# distroless has no curl: the binary checks its own /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/ketabridge", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/ketabridge"]
CMD ["serve"]
