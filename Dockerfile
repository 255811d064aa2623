# The one binary of the shop, static (no cgo: SQLite is pure Go), on a
# distroless base with no shell, run as an unprivileged user. Every service
# is this image with `serve <service>` (deploy/k8s, deploy/compose).
#
#   docker build -t ghcr.io/junction-go/junction:0.1.0 .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/junction ./cmd/junction

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/junction /junction
USER 65532:65532
ENTRYPOINT ["/junction"]
CMD ["--help"]
