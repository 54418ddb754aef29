# Multi-stage build: a static headgate binary on an empty base, run as a non-root user.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/headgate . \
 && mkdir -p /out/etc/headgate

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/headgate /headgate
COPY --from=build /out/etc/headgate /etc/headgate
USER 65532:65532
EXPOSE 4180
ENTRYPOINT ["/headgate"]
CMD ["-config", "/etc/headgate/gateway.yaml"]
