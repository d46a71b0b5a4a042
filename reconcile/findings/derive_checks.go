package findings

import (
	"strconv"
	"strings"

	"github.com/meshdrift/meshdrift/reconcile"
)

// checks derives the findings of the semantic checks (MD05xx, MD06xx) from their latest
// live run: one finding per code and object, with the object's GitOps app. While the run
// waits for a cache, or the mesh watch is down, the checks' findings are held: what the
// checks did not see is not gone.
func (d *deriver) checks(snap reconcile.Snapshot, owners ownerIndex) {
	run := snap.Checks
	if run == nil {
		return
	}
	why := run.Waiting
	if why == "" {
		for _, st := range snap.Sources {
			if st.Name == meshSource && !st.Up {
				why = "source " + meshSource + " is down"
			}
		}
	}
	if why != "" {
		for _, c := range run.Checks {
			d.out.Holds = append(d.out.Holds, Hold{Code: Code(c.Code), Reason: why})
		}
		return
	}
	if len(run.Results) == 0 {
		return
	}
	// The objects the results name, for their owners: a fleet has tens of thousands of
	// objects and a handful of results.
	objects := make(map[reconcile.ObjectRef]reconcile.MeshChange, len(run.Results))
	for _, r := range run.Results {
		objects[r.Object] = reconcile.MeshChange{Ref: r.Object}
	}
	for _, c := range snap.Objects {
		if _, ok := objects[c.Ref]; ok {
			objects[c.Ref] = c
		}
	}
	type key struct {
		code string
		ref  reconcile.ObjectRef
	}
	grouped := map[key][]reconcile.CheckResult{}
	var order []key
	for _, r := range run.Results {
		k := key{r.Code, r.Object}
		if _, ok := grouped[k]; !ok {
			order = append(order, k)
		}
		grouped[k] = append(grouped[k], r)
	}
	for _, k := range order {
		rs := grouped[k]
		subj := Subject{Object: k.ref}
		c := objects[k.ref]
		if a, ok := owners.owner(c); ok {
			subj.App = a.Key
		}
		detail := rs[0].Message
		if len(rs) > 1 {
			detail += " (and " + strconv.Itoa(len(rs)-1) + " more)"
		}
		ev := make([]string, 0, len(rs))
		for _, r := range rs {
			ev = append(ev, joinNonEmpty(": ", r.Path, r.Message))
		}
		d.add(Problem{Code: Code(k.code), Subject: subj, Detail: detail, Evidence: strings.Join(ev, "; ")})
	}
}
