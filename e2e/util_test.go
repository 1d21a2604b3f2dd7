package e2e

import (
	"testing"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/internal/testenv"
)

// deployImage is a release spec naming an image no engine has.
func deployImage(t *testing.T) deploy.Spec {
	return deploy.Spec{Image: "oneoffd-test/never-built:1"}
}

// imageFor returns the test image's reference.
func imageFor(t *testing.T) string { return testenv.Image(t) }
