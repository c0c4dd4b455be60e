package dnsredirect

import "net/netip"

// trie is a binary trie of the networks map for one address family: longest-prefix match, and
// the size of the empty block around an address that matches nothing (the ECS scope of a
// "not in the map" decision).
type trie struct {
	nodes []trieNode
}

type trieNode struct {
	child [2]int32 // 0: none (node 0 is the root, never a child)
	entry int32    // index into the map's entries, -1: none
}

func newTrie() *trie { return &trie{nodes: []trieNode{{entry: -1}}} }

// bit returns bit i (0 = most significant) of addr.
func bit(a *[16]byte, i int) int { return int(a[i>>3]>>(7-uint(i&7))) & 1 }

// addrBytes returns the address bytes, IPv4 in the first four.
func addrBytes(a netip.Addr) (b [16]byte) {
	if a.Is4() {
		v := a.As4()
		copy(b[:], v[:])
		return b
	}
	return a.As16()
}

// insert maps p to entry; the first insertion of a prefix wins.
func (t *trie) insert(p netip.Prefix, entry int) {
	b := addrBytes(p.Addr())
	n := int32(0)
	for i := range p.Bits() {
		c := bit(&b, i)
		if t.nodes[n].child[c] == 0 {
			t.nodes = append(t.nodes, trieNode{entry: -1})
			t.nodes[n].child[c] = int32(len(t.nodes) - 1)
		}
		n = t.nodes[n].child[c]
	}
	if t.nodes[n].entry < 0 {
		t.nodes[n].entry = int32(entry)
	}
}

// lookup returns the entry of the longest prefix holding a (-1: none) and the prefix length
// over which that outcome is the same: the depth at which a's path leaves the trie's networks.
// An address inside a matching prefix that also holds more specific networks gets the block
// that excludes them; an address that matches nothing gets the empty block around it.
func (t *trie) lookup(a netip.Addr) (entry, bits int) {
	b := addrBytes(a)
	entry = -1
	n := int32(0)
	for i := 0; ; i++ {
		nd := &t.nodes[n]
		if nd.entry >= 0 {
			entry = int(nd.entry)
		}
		if i == a.BitLen() || (nd.child[0] == 0 && nd.child[1] == 0) {
			return entry, i
		}
		next := nd.child[bit(&b, i)]
		if next == 0 {
			return entry, i + 1
		}
		n = next
	}
}
