# trioproxy as an image: the wheel built in one stage, installed in a slim one.
#   docker build -t trioproxy .
#   docker run -p 8000:8000 trioproxy serve --host 0.0.0.0 --upstream http://model:8080/v1
FROM python:3.13-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY trioproxy ./trioproxy
RUN pip install --no-cache-dir build==1.6.1 && python -m build --wheel --outdir /dist

FROM python:3.13-slim
COPY --from=build /dist /dist
RUN pip install --no-cache-dir /dist/*.whl && rm -rf /dist \
    && useradd --system --uid 10001 --no-create-home trioproxy
USER 10001
EXPOSE 8000
# slim has no curl: the health check asks /health with Python's own client.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
ENTRYPOINT ["trioproxy"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
