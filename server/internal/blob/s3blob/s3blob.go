// Package s3blob is the scale-out blob store: objects in one bucket of any
// S3-compatible service (AWS S3, MinIO, Ceph RGW, the Versity gateway),
// reached through minio-go.
//
// Atomicity comes from S3 itself: an object becomes visible only when its
// PUT (or multipart completion) succeeds, and concurrent writers of a key
// each replace it whole. A Put whose reader fails, or holds more or fewer
// bytes than declared, aborts before completion, so nothing is stored.
//
// Memory: objects larger than PartSize go up as a multipart upload, one part
// buffered at a time; Get streams the response body.
//
// Missing keys: S3 answers 403 for a missing key when the caller may not
// list the bucket. This package maps NoSuchKey to blob.ErrNotFound; give the
// server's credentials list permission so missing objects stay 404s.
package s3blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/vigil-ota/vigil/server/internal/apperr"
	"github.com/vigil-ota/vigil/server/internal/blob"
)

// PartSize is the multipart part size in bytes, and so the most memory one
// upload buffers. With S3's limit of 10,000 parts it caps one object at
// 156 GiB, far above any patch image.
const PartSize = 16 << 20

// DefaultRegion is used when the URL names none.
const DefaultRegion = "us-east-1"

// Config says where the bucket is.
type Config struct {
	Endpoint  string // host:port, no scheme
	Bucket    string
	Region    string
	AccessKey string
	SecretKey string
	// TLS selects https. Default true.
	TLS bool
	// PathStyle selects path-style addressing (endpoint/bucket/key), which
	// most self-hosted services need. Default true.
	PathStyle bool
}

// ParseURL reads s3://BUCKET?endpoint=HOST:PORT&region=R&tls=false&path_style=true.
// Credentials are not taken from the URL (it ends up in logs and process
// lists); pass them in Config from the configuration's secret settings.
func ParseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "s3" {
		return Config{}, fmt.Errorf("scheme %q is not s3", u.Scheme)
	}
	if u.User != nil {
		return Config{}, errors.New("credentials in the URL are not accepted; use the s3_access_key and s3_secret_key settings")
	}
	cfg := Config{Bucket: u.Host, Region: DefaultRegion, TLS: true, PathStyle: true}
	if cfg.Bucket == "" {
		return Config{}, errors.New("no bucket: write s3://BUCKET?endpoint=HOST:PORT")
	}
	if u.Path != "" && u.Path != "/" {
		return Config{}, fmt.Errorf("path %q is not supported; the bucket is the whole store", u.Path)
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "endpoint", "region", "tls", "path_style":
		default:
			return Config{}, fmt.Errorf("unknown parameter %q (known: endpoint, region, tls, path_style)", k)
		}
	}
	cfg.Endpoint = q.Get("endpoint")
	if cfg.Endpoint == "" {
		return Config{}, errors.New("no endpoint: write s3://BUCKET?endpoint=HOST:PORT")
	}
	if strings.Contains(cfg.Endpoint, "://") {
		return Config{}, fmt.Errorf("endpoint %q must be HOST:PORT without a scheme; use tls=false for http", cfg.Endpoint)
	}
	if r := q.Get("region"); r != "" {
		cfg.Region = r
	}
	for name, dst := range map[string]*bool{"tls": &cfg.TLS, "path_style": &cfg.PathStyle} {
		if v := q.Get(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Config{}, fmt.Errorf("parameter %s=%q is not true or false", name, v)
			}
			*dst = b
		}
	}
	return cfg, nil
}

// Store is a blob.Store on an S3 bucket.
type Store struct {
	c      *minio.Client
	bucket string
}

var _ blob.Store = (*Store)(nil)

// Open connects and checks that the bucket exists, within ctx.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	lookup := minio.BucketLookupDNS
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       cfg.TLS,
		Region:       cfg.Region,
		BucketLookup: lookup,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 endpoint %q: %w", cfg.Endpoint, err)
	}
	ok, err := c.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("s3 endpoint %q is not reachable or refused the credentials: %w", cfg.Endpoint, err)
	}
	if !ok {
		return nil, fmt.Errorf("s3 bucket %q does not exist at %q", cfg.Bucket, cfg.Endpoint)
	}
	return &Store{c: c, bucket: cfg.Bucket}, nil
}

// Client exposes the minio client for tests and tools that manage buckets.
func (s *Store) Client() *minio.Client { return s.c }

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := blob.ValidateKey(key); err != nil {
		return err
	}
	if size < 0 {
		return apperr.New(apperr.Invalid, "object %q: negative size %d", key, size)
	}
	_, err := s.c.PutObject(ctx, s.bucket, key, blob.ExactReader(r, size), size, minio.PutObjectOptions{
		PartSize:    PartSize,
		ContentType: "application/octet-stream",
	})
	if err != nil {
		if errors.Is(err, blob.ErrSizeMismatch) {
			return blob.SizeError(key, err)
		}
		return s.classify(key, err)
	}
	return nil
}

// Get implements blob.Store. A whole-object Get makes one request and takes
// Info from its response, so an object replaced meanwhile (timestamp.json
// during a publish) is read whole, old or new. A ranged Get stats first and
// pins the ETag, so a missing key or a bad range fails here, not on the
// first Read.
func (s *Store) Get(ctx context.Context, key string, rng *blob.Range) (io.ReadCloser, blob.Info, error) {
	if rng == nil {
		if err := blob.ValidateKey(key); err != nil {
			return nil, blob.Info{}, err
		}
		// One plain GET: body and Info from the same response.
		body, st, _, err := minio.Core{Client: s.c}.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
		if err != nil {
			return nil, blob.Info{}, s.classify(key, err)
		}
		info := infoOf(st)
		info.Key = key
		return &coreBody{ReadCloser: body, s: s, key: key}, info, nil
	}
	info, err := s.Stat(ctx, key)
	if err != nil {
		return nil, blob.Info{}, err
	}
	if err := blob.ValidateRange(rng, info.Size); err != nil {
		return nil, blob.Info{}, err
	}
	opts := minio.GetObjectOptions{}
	// Pin the version we described, so a concurrent overwrite cannot mix
	// one object's Info with another's bytes.
	if info.ETag != "" {
		if err := opts.SetMatchETag(strings.Trim(info.ETag, `"`)); err != nil {
			return nil, blob.Info{}, err
		}
	}
	if rng != nil && info.Size > 0 {
		end := info.Size - 1
		if rng.Length >= 0 && rng.Offset+rng.Length-1 < end {
			end = rng.Offset + rng.Length - 1
		}
		if rng.Length == 0 {
			return io.NopCloser(strings.NewReader("")), info, nil
		}
		if err := opts.SetRange(rng.Offset, end); err != nil {
			return nil, blob.Info{}, apperr.Wrap(err, apperr.Invalid, "bad range")
		}
	}
	obj, err := s.c.GetObject(ctx, s.bucket, key, opts)
	if err != nil {
		return nil, blob.Info{}, s.classify(key, err)
	}
	return &object{obj: obj, s: s, key: key}, info, nil
}

// coreBody maps read errors of a plain GET's body.
type coreBody struct {
	io.ReadCloser
	s   *Store
	key string
}

func (b *coreBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = b.s.classify(b.key, err)
	}
	return n, err
}

// object maps errors that minio reports lazily, on the first Read.
type object struct {
	obj *minio.Object
	s   *Store
	key string
}

func (o *object) Read(p []byte) (int, error) {
	n, err := o.obj.Read(p)
	if err != nil && err != io.EOF {
		err = o.s.classify(o.key, err)
	}
	return n, err
}

func (o *object) Close() error { return o.obj.Close() }

// Stat implements blob.Store.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	if err := blob.ValidateKey(key); err != nil {
		return blob.Info{}, err
	}
	st, err := s.c.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return blob.Info{}, s.classify(key, err)
	}
	return infoOf(st), nil
}

// Delete implements blob.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := blob.ValidateKey(key); err != nil {
		return err
	}
	err := s.c.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{})
	if err != nil && !errors.Is(s.classify(key, err), blob.ErrNotFound) {
		return s.classify(key, err)
	}
	return nil
}

// List implements blob.Store.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[blob.Info, error] {
	return func(yield func(blob.Info, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // stops minio's listing goroutine if the caller breaks early
		for obj := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if obj.Err != nil {
				yield(blob.Info{}, s.classify(prefix, obj.Err))
				return
			}
			if !yield(infoOf(obj), nil) {
				return
			}
		}
	}
}

func infoOf(o minio.ObjectInfo) blob.Info {
	etag := o.ETag
	if etag != "" && !strings.HasPrefix(etag, `"`) {
		etag = `"` + etag + `"`
	}
	return blob.Info{Key: o.Key, Size: o.Size, ModTime: o.LastModified.UTC().Truncate(time.Second), ETag: etag}
}

// classify sorts an S3 error by what the caller should do.
func (s *Store) classify(key string, err error) error {
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == minio.NoSuchKey || (resp.StatusCode == http.StatusNotFound && resp.Code != minio.NoSuchBucket):
		return fmt.Errorf("%w: %q", blob.ErrNotFound, key)
	case resp.Code == minio.NoSuchBucket:
		return apperr.Wrap(err, apperr.Unavailable, "object storage bucket %q is missing", s.bucket)
	case resp.StatusCode == http.StatusPreconditionFailed:
		return apperr.Wrap(err, apperr.Conflict, "object %q changed while being read", key)
	case resp.Code == "InvalidRange" || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return apperr.Wrap(err, apperr.OutOfRange, "range not satisfiable for %q", key)
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized:
		return apperr.Wrap(err, apperr.Unavailable, "object storage refused the server's credentials")
	}
	return apperr.Wrap(err, apperr.Unavailable, "object storage failed on %q", key)
}
