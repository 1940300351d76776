# The MagicAF app instance for the compose files: `python -m magicaf_nb.app` serving
# POST /ask, /health and /metrics on port 8000. Each instance builds its own RAGWorkflow
# from MagicAF's variables (EMBEDDING_URL, QDRANT_URL, LLM_URL, ...), set by compose.
#   docker build -f stack/app.Dockerfile -t magicaf-nb-app .
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY magicaf_nb ./magicaf_nb
RUN pip install --no-cache-dir . && useradd --system --uid 10001 app
USER app
EXPOSE 8000
CMD ["python", "-m", "magicaf_nb.app", "--host", "0.0.0.0", "--port", "8000"]
