# One image for every role: web, worker and scheduler differ only by command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NEWSLETTER_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md scheduler.py ./
COPY worker ./worker
COPY templates ./templates
COPY samples ./samples
RUN pip install --no-cache-dir -e . \
    && useradd --system --home /app newsletter \
    && mkdir -p /data && chown newsletter /data

USER newsletter
VOLUME ["/data"]
EXPOSE 8000 2525
CMD ["newsletter", "web", "--host", "0.0.0.0", "--port", "8000"]
