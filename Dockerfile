# The gateway image used by compose.yaml (the brokers are apache/kafka images).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core core
COPY schemas schemas
COPY ingress ingress
COPY streams streams
COPY egress egress
COPY control control
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/mailgate mailgate \
    && mkdir -p /var/lib/mailgate && chown mailgate /var/lib/mailgate
USER mailgate
ENV MAILGATE_HOME=/var/lib/mailgate
EXPOSE 2525
ENTRYPOINT ["mailgate"]
CMD ["up"]
