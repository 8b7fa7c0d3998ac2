FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pgqueue ./pgqueue
COPY migrations ./migrations
COPY examples ./examples
RUN pip install --no-cache-dir .
ENTRYPOINT ["pgqueue"]
