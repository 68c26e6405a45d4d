# Silta API — production image.
#   docker build -t silta .
#   docker run --rm --env-file silta.env silta migrate        # explicit step, once per release
#   docker run -p 8000:8000 --env-file silta.env silta          # serves with several workers
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first: this layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN pip install -r requirements.lock

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SILTA_ENV=production \
    SILTA_DATA_DIR=/var/lib/silta \
    PYTHONPATH=/srv/silta
RUN groupadd --system silta && useradd --system --gid silta --home-dir /var/lib/silta --create-home silta
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv/silta
COPY alembic.ini ./
COPY migrations ./migrations
COPY app ./app
USER silta
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# The code runs from /srv/silta (beside alembic.ini and migrations), not from site-packages.
ENTRYPOINT ["python", "-m", "app.cli"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--no-migrate", "--workers", "4"]
