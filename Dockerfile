# headgate's image: a static binary on an empty base, run as a non-root user.
#
#   docker build -t headgate .
#   podman build --format docker -t headgate .   (the OCI format would drop the HEALTHCHECK)
#
# The image runs the shipped gateway.yaml, listening on every interface of the container, with
# the secrets it names taken from the environment (OIDC_CLIENT_SECRET, HEADSCALE_API_KEY,
# HEADGATE_SESSION_SECRET). Mount your own configuration over /etc/headgate/gateway.yaml.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# --build-arg HEADGATE_BUILD_TAGS=tailnet builds the tailnet listener in (README: "Signed in by
# the tailnet"); mount a volume for its tailnet.state_dir.
ARG HEADGATE_BUILD_TAGS=""
RUN CGO_ENABLED=0 go build -trimpath -tags "$HEADGATE_BUILD_TAGS" -ldflags="-s -w" -o /out/headgate .

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/headgate /headgate
COPY gateway.yaml /etc/headgate/gateway.yaml
# A container is reached through its own interface: its loopback would take nobody's requests.
ENV HEADGATE_LISTEN=0.0.0.0:4180
USER 65532:65532
EXPOSE 4180
# The configuration's directory: `headgate healthcheck`, like headgate, reads gateway.yaml from
# the working directory unless told otherwise.
WORKDIR /etc/headgate
# An empty base has no shell and no curl: headgate asks its own /ping.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 CMD ["/headgate", "healthcheck"]
ENTRYPOINT ["/headgate"]
CMD ["-config", "/etc/headgate/gateway.yaml"]
