module github.com/gworker/gworker

go 1.26.0
