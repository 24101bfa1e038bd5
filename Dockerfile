# The gateway image used by compose.yaml (the brokers are apache/kafka images).
# Stage 1 builds the wheels: the spam filter's Rust extension needs cargo and a C linker.
FROM python:3.11-slim AS build
COPY --from=rust:1-slim-bookworm /usr/local/cargo /usr/local/cargo
COPY --from=rust:1-slim-bookworm /usr/local/rustup /usr/local/rustup
ENV CARGO_HOME=/usr/local/cargo RUSTUP_HOME=/usr/local/rustup PATH=/usr/local/cargo/bin:$PATH
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core core
COPY schemas schemas
COPY ingress ingress
COPY streams streams
COPY egress egress
COPY control control
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Stage 2: the gateway, from those wheels (no compiler in the image).
FROM python:3.11-slim
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/*.whl && useradd --system --home /var/lib/mailgate mailgate \
    && mkdir -p /var/lib/mailgate && chown mailgate /var/lib/mailgate
USER mailgate
ENV MAILGATE_HOME=/var/lib/mailgate
EXPOSE 2525
ENTRYPOINT ["mailgate"]
CMD ["up"]
