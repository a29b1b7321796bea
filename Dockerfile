# callbackhub: the API and (by default) a dispatcher in one image.
#   docker build -t callbackhub .
#   docker run -e CALLBACKHUB_DATABASE_URL=postgresql://… -e CALLBACKHUB_JWT_SECRET=… \
#     -e CALLBACKHUB_ENCRYPTION_KEYS=k1:… -p 8080:8080 callbackhub
# The same image runs a dispatcher alone with the command `callbackhub dispatcher`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY dispatcher ./dispatcher
COPY sql ./sql
RUN pip install . \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin callbackhub \
    && rm -rf /src

USER callbackhub
WORKDIR /home/callbackhub

# CALLBACKHUB_DATABASE_URL comes from the environment the container is started with; the other
# settings too (see the README). Logs are JSON lines on stderr.
ENV CALLBACKHUB_PORT=8080 \
    CALLBACKHUB_LOG_FORMAT=json \
    CALLBACKHUB_DATA_DIR=/home/callbackhub/data

EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('CALLBACKHUB_PORT', '8080'), timeout=3)"]

CMD ["callbackhub", "serve", "--host", "0.0.0.0"]
