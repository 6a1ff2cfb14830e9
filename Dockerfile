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
RUN useradd --system --uid 10001 mojaflow && mkdir -p /data && chown mojaflow /data
USER mojaflow
ENV MOJAFLOW_DATA_DIR=/data MOJAFLOW_API_HOST=0.0.0.0
EXPOSE 3003 3004
CMD ["python", "-m", "api"]
