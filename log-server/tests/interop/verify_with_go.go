// An independent check of an arcane-log server with Go's reference transparency-log code
// (golang.org/x/mod/sumdb/note and sumdb/tlog), used unmodified.
//
// Usage: go run verify_with_go.go BASE_URL OLD_CHECKPOINT_FILE
//
// It verifies the latest and an older checkpoint's signatures, reads every hash tile and entry
// bundle through tlog's verifying TileHashReader, recomputes the root, and checks the server's
// inclusion and consistency proofs (and its own, computed from the tiles).
package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "go-verifier: "+format+"\n", args...)
	os.Exit(1)
}

func get(url string) []byte {
	resp, err := http.Get(url)
	if err != nil {
		fail("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		fail("GET %s: status %d, %v", url, resp.StatusCode, err)
	}
	return body
}

func openCheckpoint(msg []byte, verifiers note.Verifiers, origin string) tlog.Tree {
	n, err := note.Open(msg, verifiers)
	if err != nil {
		fail("note.Open: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != origin {
		fail("unexpected checkpoint body %q", n.Text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("size: %v", err)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		fail("root: %v", err)
	}
	var h tlog.Hash
	copy(h[:], root)
	return tlog.Tree{N: size, Hash: h}
}

// tileReader fetches C2SP tiles: Go's tile paths carry the height ("tile/8/L/N"), C2SP's do not.
type tileReader struct{ base string }

func (r *tileReader) Height() int { return 8 }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		path := strings.Replace(t.Path(), "tile/8/", "tile/", 1)
		out[i] = get(r.base + "/" + path)
	}
	return out, nil
}

func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

func decodeProof(items []string) []tlog.Hash {
	out := make([]tlog.Hash, len(items))
	for i, s := range items {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != 32 {
			fail("proof hash %q", s)
		}
		copy(out[i][:], b)
	}
	return out
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: verify_with_go BASE_URL OLD_CHECKPOINT_FILE")
	}
	base := os.Args[1]
	vkey := strings.TrimSpace(string(get(base + "/log.vkey")))
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		fail("verifier key: %v", err)
	}
	verifiers := note.VerifierList(verifier)
	origin := verifier.Name()
	latest := openCheckpoint(get(base+"/checkpoint"), verifiers, origin)
	oldMsg, err := os.ReadFile(os.Args[2])
	if err != nil {
		fail("%v", err)
	}
	old := openCheckpoint(oldMsg, verifiers, origin)

	hr := tlog.TileHashReader(latest, &tileReader{base: base})
	root, err := tlog.TreeHash(latest.N, hr)
	if err != nil || root != latest.Hash {
		fail("root from tiles %v != checkpoint %v (%v)", root, latest.Hash, err)
	}

	// Every entry bundle: each entry's record hash equals the level-0 hash in the verified tiles.
	for start := int64(0); start < latest.N; start += 256 {
		width := latest.N - start
		path := fmt.Sprintf("tile/entries/%s", strings.TrimPrefix(tlog.Tile{H: 8, L: 0, N: start / 256, W: 256}.Path(), "tile/8/0/"))
		if width < 256 {
			path = fmt.Sprintf("tile/entries/%s", strings.TrimPrefix(tlog.Tile{H: 8, L: 0, N: start / 256, W: int(width)}.Path(), "tile/8/0/"))
		} else {
			width = 256
		}
		bundle := get(base + "/" + path)
		for i := int64(0); i < width; i++ {
			if len(bundle) < 2 {
				fail("bundle %s truncated", path)
			}
			n := int(binary.BigEndian.Uint16(bundle))
			if len(bundle) < 2+n {
				fail("bundle %s truncated", path)
			}
			entry := bundle[2 : 2+n]
			bundle = bundle[2+n:]
			hashes, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, start+i)})
			if err != nil {
				fail("ReadHashes: %v", err)
			}
			if tlog.RecordHash(entry) != hashes[0] {
				fail("entry %d does not match its leaf hash", start+i)
			}
		}
		if len(bundle) != 0 {
			fail("bundle %s has trailing bytes", path)
		}
	}

	// Inclusion proofs: the server's, and Go's own from the tiles.
	checked := 0
	for i := int64(0); i < latest.N; i += 1 + latest.N/37 {
		var reply struct {
			LeafHash string   `json:"leaf_hash"`
			Proof    []string `json:"proof"`
			TreeSize int64    `json:"tree_size"`
		}
		if err := json.Unmarshal(get(fmt.Sprintf("%s/v1/proof/inclusion?index=%d&size=%d", base, i, latest.N)), &reply); err != nil {
			fail("inclusion JSON: %v", err)
		}
		leaf, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, i)})
		if err != nil {
			fail("%v", err)
		}
		if err := tlog.CheckRecord(decodeProof(reply.Proof), latest.N, latest.Hash, i, leaf[0]); err != nil {
			fail("server inclusion proof for %d: %v", i, err)
		}
		own, err := tlog.ProveRecord(latest.N, i, hr)
		if err != nil || tlog.CheckRecord(own, latest.N, latest.Hash, i, leaf[0]) != nil {
			fail("own inclusion proof for %d: %v", i, err)
		}
		checked++
	}

	// Consistency from the older checkpoint: the server's proof, and Go's own.
	var cons struct {
		Proof []string `json:"proof"`
	}
	if err := json.Unmarshal(get(fmt.Sprintf("%s/v1/proof/consistency?old=%d&new=%d", base, old.N, latest.N)), &cons); err != nil {
		fail("consistency JSON: %v", err)
	}
	if err := tlog.CheckTree(decodeProof(cons.Proof), latest.N, latest.Hash, old.N, old.Hash); err != nil {
		fail("server consistency proof: %v", err)
	}
	own, err := tlog.ProveTree(latest.N, old.N, hr)
	if err != nil || tlog.CheckTree(own, latest.N, latest.Hash, old.N, old.Hash) != nil {
		fail("own consistency proof: %v", err)
	}
	fmt.Printf("go-verifier: ok: size %d, %d inclusion proofs, consistency %d -> %d\n", latest.N, checked, old.N, latest.N)
}
