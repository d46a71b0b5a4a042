package testbed

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"sort"
	"sync"
)

// Artifact is a tarball served the way source-controller serves GitRepository artifacts.
type Artifact struct {
	URL      string
	Path     string
	Revision string
	Digest   string
	Size     int64
}

// ArtifactServer serves artifacts on a loopback port.
type ArtifactServer struct {
	srv  *http.Server
	base string

	mu    sync.Mutex
	blobs map[string][]byte
}

// NewArtifactServer starts an artifact server on 127.0.0.1.
func NewArtifactServer() (*ArtifactServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for artifacts: %w", err)
	}
	s := &ArtifactServer{base: "http://" + l.Addr().String(), blobs: map[string][]byte{}}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve)}
	go func() { _ = s.srv.Serve(l) }()
	return s, nil
}

func (s *ArtifactServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	b, ok := s.blobs[r.URL.Path]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	_, _ = w.Write(b)
}

// Close stops the server.
func (s *ArtifactServer) Close() { _ = s.srv.Close() }

// Publish serves files (path → content) as a tar.gz for a Git revision such as
// "main@sha1:<40 hex>", and returns the artifact with its real digest.
func (s *ArtifactServer) Publish(name, revision string, files map[string]string) (Artifact, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		body := []byte(files[p])
		if err := tw.WriteHeader(&tar.Header{Name: p, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			return Artifact{}, fmt.Errorf("writing artifact %s: %w", name, err)
		}
		if _, err := tw.Write(body); err != nil {
			return Artifact{}, fmt.Errorf("writing artifact %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return Artifact{}, fmt.Errorf("closing artifact %s: %w", name, err)
	}
	if err := gz.Close(); err != nil {
		return Artifact{}, fmt.Errorf("compressing artifact %s: %w", name, err)
	}
	sum := sha256.Sum256(buf.Bytes())
	path := fmt.Sprintf("/%s/%s.tar.gz", name, hex.EncodeToString(sum[:8]))
	s.mu.Lock()
	s.blobs[path] = buf.Bytes()
	s.mu.Unlock()
	return Artifact{
		URL:      s.base + path,
		Path:     path[1:],
		Revision: revision,
		Digest:   "sha256:" + hex.EncodeToString(sum[:]),
		Size:     int64(buf.Len()),
	}, nil
}
