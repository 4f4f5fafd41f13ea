# chatctl in a container: the bot daemon, the HTTP API, and the one-shot commands (migrate,
# apply, summarize, backup) against a database given by DATABASE_URL.
#
#   docker build --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD) -t chatctl .
#   docker run --rm --env-file chatctl.env -p 8080:8080 chatctl            # serve
#   docker run --rm --env-file chatctl.env -e CHATCTL_HEALTH_URL=http://127.0.0.1:9464/healthz \
#     -v "$PWD/bots:/work/bots:ro" chatctl bots run --metrics 0.0.0.0:9464  # the bots
#   docker run --rm --env-file chatctl.env chatctl migrate up
#
# Checked by hadolint in CI (tests/it/tidy.rs).

# Build: the shipped profile (thin LTO, stripped).
FROM rust:1.95-bookworm AS build
ARG GIT_COMMIT=unknown
ENV CHATCTL_GIT_COMMIT=${GIT_COMMIT}
WORKDIR /src
COPY . .
RUN cargo build --profile dist --locked --bin chatctl \
    && install -m 0755 target/dist/chatctl /usr/local/bin/chatctl

# Run: Debian slim, CA certificates (TLS to Supabase and the model), the PostgreSQL client
# tools an operator reaches for beside chatctl (psql, pg_dump: chatctl's own backups need
# none), curl for the health check; a user of its own.
FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /work --uid 10001 --user-group chatctl
COPY --from=build /usr/local/bin/chatctl /usr/local/bin/chatctl
USER 10001:10001
WORKDIR /work
ENV CHATCTL_HEALTH_URL=http://127.0.0.1:8080/healthz
EXPOSE 8080 9464
# /healthz of `serve` (8080) or of `bots run --metrics` (set CHATCTL_HEALTH_URL).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["sh", "-c", "curl --fail --silent --show-error --max-time 4 \"$CHATCTL_HEALTH_URL\""]
# SIGTERM: requests and replies in flight finish, then a clean exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/chatctl"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--log-format", "json"]
