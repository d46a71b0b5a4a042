//go:build tools

// Package crds pins the modules the test bed takes CRDs from. The helm-controller root module
// is not served by the module proxy, so the HelmRelease CRD is generated with controller-gen
// from the pinned helm-controller/api types. source-controller is required (and its go.sum
// lines kept by `go mod download`) only for its config/crd/bases; none of it is built.
package crds

import _ "github.com/fluxcd/helm-controller/api/v2"
