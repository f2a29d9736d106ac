# The backend's image, for docker-compose.yml: one image, the role chosen by the command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY domain domain
COPY services services
COPY projections projections
COPY protos protos
RUN pip install --no-cache-dir -c constraints.txt '.[dev]' \
    && python protos/generate.py \
    && pip install --no-cache-dir -c constraints.txt .
EXPOSE 50051
CMD ["retail", "run"]
