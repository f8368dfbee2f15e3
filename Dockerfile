# imkit-server image: built here, run as a non-root user, with the database
# and token secret in a volume. See docs/operations.md.
#
#   docker build -t imkit .
#   docker run -p 7400:7400 -p 7401:7401 -p 7480:7480 -v imkit-data:/var/lib/imkit imkit

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The very command CI runs (.ci/run), so CI compiles what the image ships.
RUN scripts/build-release.sh

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/imkit --shell /usr/sbin/nologin imkit \
 && install -d -o imkit -g imkit -m 0750 /var/lib/imkit \
 && install -d -m 0755 /etc/imkit
COPY --from=build /src/target/release/imkit-server /usr/local/bin/imkit-server
COPY deploy/imkit.toml /etc/imkit/imkit.toml
USER imkit
WORKDIR /var/lib/imkit
VOLUME ["/var/lib/imkit"]
# chat (tcp), chat (websocket), HTTP API, metrics
EXPOSE 7400 7401 7480 9464
STOPSIGNAL SIGTERM
# Metrics on every interface inside the container: publish 9464 only to
# your monitoring network.
ENTRYPOINT ["imkit-server", "--config", "/etc/imkit/imkit.toml", "--metrics", "0.0.0.0:9464"]
