// Package checks holds meshdrift's semantic checks of mesh configuration: broken
// references, conflicts and contradictions that the API server accepts, GitOps tools apply
// and report as healthy, and the mesh then serves wrongly.
//
// They are shaped like Istio's analyzers (pkg/config/analysis): each Check declares its
// finding code, the kinds it reads and whether it needs live state, and is one function
// from a Snapshot to results. All lists every check explicitly; nothing registers itself.
// The same checks run offline on manifests (`meshdrift validate`), where checks that need
// live pods or status, or the time (Snapshot.Now), are skipped, and on a snapshot of the
// cluster: Live runs them in
// `serve` on a Source built from informer caches (adapters/mesh.LiveSource: metadata-only
// pods), re-evaluated on change. A run decodes every mesh object (about 1.4 s of CPU at
// 20,000), so Live does not run again while nothing the checks read changed: the source
// counts its caches' changes (Versioned) and checks that depend on the time say when
// their answer would change with time alone (Snapshot.RecheckAt).
package checks

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshdrift/meshdrift/reconcile"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// Metadata describes a check.
type Metadata struct {
	Code findings.Code
	// Name is the check's stable name, "<area>.<what>".
	Name        string
	Description string
	// Inputs are the kinds the check reads. Kinds are matched by group and kind; the
	// version names the one the check was written against. A check whose input kind the
	// snapshot says is not served is skipped with a reason.
	Inputs []schema.GroupVersionKind
	// NeedsLive is set for checks that read pods or status written by controllers: they
	// are skipped on manifests.
	NeedsLive bool
	// NeedsNow is set for checks that measure how long something lasted from
	// Snapshot.Now: they are skipped when it is zero. Such a check calls
	// Snapshot.RecheckAt with the time each answer would change by time alone, and its
	// messages do not depend on Now, so that a run on unchanged inputs may be skipped
	// until then (Live).
	NeedsNow bool
	// IST is the `istioctl analyze` code the check corresponds to, "" when none.
	IST string
	// Beyond says what meshdrift catches that `istioctl analyze` does not.
	Beyond string
}

// Check is one semantic check.
type Check interface {
	Metadata() Metadata
	Run(ctx context.Context, s *Snapshot) []Result
}

// Result is one problem a check found on one object.
type Result struct {
	Code   findings.Code
	Object reconcile.ObjectRef
	// Path is the field the problem is in, e.g. spec.http[0].route[1].destination.host.
	Path    string
	Message string
}

// Problem turns the result into the findings engine's input.
func (r Result) Problem() findings.Problem {
	return findings.Problem{Code: r.Code, Subject: findings.Subject{Object: r.Object}, Detail: r.Message}
}

// Skipped says why a check did not run.
type Skipped struct {
	Name   string
	Code   findings.Code
	Reason string
}

// All returns every check, in code order.
func All() []Check {
	return []Check{
		vsDestinationHost{},
		vsSubset{},
		vsGateway{},
		vsHostConflict{},
		drSubsetPods{},
		gatewaySelectorPods{},
		policySelectorPods{},
		mtlsConflict{},
		istiodValidation{},
		vsHostInGateway{},
		routeCondition{code: findings.CodeRouteNotAccepted, condition: "Accepted"},
		routeCondition{code: findings.CodeRouteRefsNotResolved, condition: "ResolvedRefs"},
		routeStatusStale{},
	}
}

// InputKinds returns the kinds the checks read.
func InputKinds(checks []Check) map[schema.GroupKind]bool {
	kinds := map[schema.GroupKind]bool{}
	for _, c := range checks {
		for _, gvk := range c.Metadata().Inputs {
			kinds[gvk.GroupKind()] = true
		}
	}
	return kinds
}

// Run runs checks on s, skipping those that need live state the snapshot lacks or read a
// kind it says is not served. Results are sorted by object, path and code.
func Run(ctx context.Context, s *Snapshot, checks []Check) ([]Result, []Skipped) {
	var results []Result
	var skipped []Skipped
	for _, c := range checks {
		md := c.Metadata()
		if md.NeedsLive && !s.Live {
			skipped = append(skipped, Skipped{Name: md.Name, Code: md.Code, Reason: "needs live pods or status"})
			continue
		}
		if md.NeedsNow && s.Now.IsZero() {
			skipped = append(skipped, Skipped{Name: md.Name, Code: md.Code, Reason: "needs the snapshot's time"})
			continue
		}
		if missing := s.unserved(md.Inputs); len(missing) > 0 {
			skipped = append(skipped, Skipped{Name: md.Name, Code: md.Code,
				Reason: fmt.Sprintf("kinds not served: %s", strings.Join(missing, ", "))})
			continue
		}
		if ctx.Err() != nil {
			break
		}
		results = append(results, c.Run(ctx, s)...)
	}
	slices.SortFunc(results, compareResults)
	return results, skipped
}

func compareResults(a, b Result) int {
	return cmpJoin(
		strings.Compare(a.Object.String(), b.Object.String()),
		strings.Compare(a.Path, b.Path),
		strings.Compare(string(a.Code), string(b.Code)),
		strings.Compare(a.Message, b.Message))
}

func cmpJoin(cs ...int) int {
	for _, c := range cs {
		if c != 0 {
			return c
		}
	}
	return 0
}
