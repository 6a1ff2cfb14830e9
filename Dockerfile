# mojaflow's image: one image, three roles (api, worker, simulators), chosen by the command.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.lock .
RUN pip install --no-cache-dir -r requirements.lock
COPY mojaflow ./mojaflow
COPY activities ./activities
COPY workflows ./workflows
COPY api ./api
COPY simulators ./simulators
COPY migrations ./migrations
COPY worker.py cbs-contract.openapi.yaml ./
# Not root: a numeric uid (so an orchestrator's runAsNonRoot can check it), no home, no shell; the code stays
# root-owned and read-only to it, only /data is its own.
RUN groupadd --system --gid 10001 mojaflow \
    && useradd --system --uid 10001 --gid mojaflow --no-create-home --shell /usr/sbin/nologin mojaflow \
    && mkdir -p /data && chown mojaflow:mojaflow /data && chmod 0700 /data
USER 10001:10001
# Loopback by default, as everywhere: docker-compose.yml opens 0.0.0.0 inside its own network only.
ENV MOJAFLOW_DATA_DIR=/data
EXPOSE 3003 3004
CMD ["python", "-m", "api"]
