package e2e

import (
	"testing"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/internal/testenv"
)

// unreachableImage is an image no engine has, in a registry that does not
// answer (nothing listens on port 1): a pull of it fails at once, and
// never leaves the machine.
const unreachableImage = "127.0.0.1:1/oneoffd-test/never-built:1"

// deployImage is a release spec naming an image no engine has.
func deployImage(t *testing.T) apitypes.Deploy {
	return apitypes.Deploy{Image: unreachableImage}
}

// imageFor returns the test image's reference.
func imageFor(t *testing.T) string { return testenv.Image(t) }

// deploySpec is a release spec of image.
func deploySpec(image string) apitypes.Deploy { return apitypes.Deploy{Image: image} }
