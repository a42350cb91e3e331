# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protocol ./protocol
COPY server ./server
COPY storage ./storage
COPY push ./push
COPY client ./client
COPY loadtest ./loadtest
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --home-dir /data rendezvous \
    && mkdir -p /data && chown rendezvous /data
USER rendezvous
WORKDIR /data
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8081/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["rendezvous"]
CMD ["serve", "--host", "0.0.0.0", "--data-dir", "/data"]
