package live

import (
	"slices"

	"porthole/internal/clientevent"
)

// childIndex lists the window's events that relate to another, by parent ID, oldest
// first. Children come after their parent, so a parent in the window has all of its
// children there: its aggregations need no storage read. Entries of parents that left the
// window stay until their children leave it too.
//
// Readers get the slices themselves: the index only ever writes past a slice's end (an
// append) or builds a new slice (a removal), never changes what a reader holds.
type childIndex map[string][]*clientevent.Encoded

func (x childIndex) add(e *clientevent.Encoded) {
	if e == nil || e.Relation() == nil {
		return
	}
	rel := e.Relation()
	list := x[rel.Parent]
	i := len(list)
	for i > 0 && list[i-1].Pos > e.Pos {
		i--
	}
	if i == len(list) {
		x[rel.Parent] = append(list, e)
		return
	}
	x[rel.Parent] = slices.Insert(slices.Clone(list), i, e)
}

func (x childIndex) remove(e *clientevent.Encoded) {
	if e == nil || e.Relation() == nil {
		return
	}
	rel := e.Relation()
	list := x[rel.Parent]
	i := slices.Index(list, e)
	switch {
	case i < 0:
		return
	case len(list) == 1:
		delete(x, rel.Parent)
	case i == 0:
		x[rel.Parent] = list[1:]
	default:
		x[rel.Parent] = slices.Delete(slices.Clone(list), i, i+1)
	}
}

// dropped forgets an item that left the window.
func (x childIndex) dropped(it *Item) {
	if it.Kind != KindEvent || it.Event == nil {
		return
	}
	x.remove(it.Event)
	delete(x, it.Event.ID)
}

// Children returns the children in the room's window of those parents that are in it and
// have any (with positions up to any later publication: callers apply their own upper
// bound), and lists the parents that are not in the window, whose children must be read
// from storage. A long-poll woken by new events allocates nothing here.
func (r *Room) Children(parents []*clientevent.Encoded) (inWindow map[string][]*clientevent.Encoded, missing []*clientevent.Encoded) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, p := range parents {
		if p.Pos <= r.base {
			missing = append(missing, p)
			continue
		}
		if children := r.children[p.ID]; len(children) > 0 {
			if inWindow == nil {
				inWindow = make(map[string][]*clientevent.Encoded)
			}
			inWindow[p.ID] = children
		}
	}
	return inWindow, missing
}
