module kantai.dev/kantai/hack/eventloop-eval

go 1.26.8
