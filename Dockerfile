# gworker's image: a static binary on a base with no shell, run as a
# non-root user. Build it with
#
#     docker build -t gworker .
#
# and run it with the command line of `celery worker`:
#
#     docker run --rm gworker -b amqp://guest:guest@rabbitmq:5672// \
#         --result-backend redis://redis:6379/0 -Q gojobs --metrics-addr :9808
#
# A service that embeds gworker builds its own main package the same way:
# change the package in the go build line. Build tags leave extras out of
# the binary, for a smaller image and less resident memory: the SQL result
# backends and the OpenTelemetry exporters,
#
#     docker build --build-arg GWORKER_TAGS=gworker_nosql,gworker_nootlp -t gworker .

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG GWORKER_TAGS=""
RUN CGO_ENABLED=0 go build -trimpath -tags "$GWORKER_TAGS" -ldflags="-s -w" -o /out/gworker ./cmd/gworker

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gworker /usr/local/bin/gworker
USER nonroot:nonroot
EXPOSE 9808
ENTRYPOINT ["/usr/local/bin/gworker"]
