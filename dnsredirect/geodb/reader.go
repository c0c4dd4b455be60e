package geodb

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"
)

// maxCachedRecords bounds the per-database cache of decoded city records.
const maxCachedRecords = 1 << 20

// Location is what the geo step uses from a City record.
type Location struct {
	Latitude, Longitude float64
	HasCoords           bool
	Country, Continent  string
}

// DB is an open database. Lookups are safe for concurrent use and do not allocate once a
// record has been seen: only the fields used are decoded, and decoded records are cached by
// their offset in the data section.
type DB struct {
	r    *maxminddb.Reader
	full *geoip2.Reader // the same bytes, for complete records (Describe)
	Path string

	mu    sync.RWMutex
	cache map[uintptr]Location // city records by data offset
	asns  map[uintptr]uint32   // AS numbers by data offset
}

// Open reads the database at path into memory and verifies its structure. It is read rather
// than memory-mapped so that a file replaced in place (cp over it) while loaded cannot fault
// the process; the watcher then loads the new contents.
func Open(path string) (*DB, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("geodb: open %s: %w", path, err)
	}
	r, err := maxminddb.OpenBytes(data)
	if err != nil {
		return nil, fmt.Errorf("geodb: open %s: %w", path, err)
	}
	if err := r.Verify(); err != nil {
		r.Close()
		return nil, fmt.Errorf("geodb: %s is not a valid MaxMind database: %w", path, err)
	}
	full, err := geoip2.OpenBytes(data)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("geodb: %s: %w", path, err)
	}
	return &DB{r: r, full: full, Path: path, cache: map[uintptr]Location{}, asns: map[uintptr]uint32{}}, nil
}

// Describe returns the complete GeoIP2 record for addr, decoded with geoip2-golang: a
// *geoip2.City for City-shaped databases, a *geoip2.ASN for ASN-shaped ones. It is for people
// (GET /dns/explain), not for the answer path, which decodes only the fields it uses.
func (d *DB) Describe(addr netip.Addr) (any, error) {
	var (
		rec any
		err error
	)
	switch t := d.Type(); {
	case strings.Contains(t, "ASN"):
		rec, err = d.full.ASN(addr)
	case strings.Contains(t, "City"):
		rec, err = d.full.City(addr)
	default:
		rec, err = d.full.Country(addr)
	}
	if err != nil {
		return nil, fmt.Errorf("geodb: describe %s in %s: %w", addr, d.Path, err)
	}
	return rec, nil
}

// Type is the database type from the metadata, e.g. "GeoLite2-City".
func (d *DB) Type() string { return d.r.Metadata.DatabaseType }

// Close releases the database. Lookups must have finished.
func (d *DB) Close() error {
	d.full.Close()
	return d.r.Close()
}

// City returns the location of addr and the database network that holds it (for an address
// without a record: the empty network around it). found is false when there is no record.
func (d *DB) City(addr netip.Addr) (loc Location, network netip.Prefix, found bool, err error) {
	res := d.r.Lookup(addr)
	if err := res.Err(); err != nil {
		return Location{}, netip.Prefix{}, false, fmt.Errorf("geodb: lookup %s: %w", addr, err)
	}
	network = res.Prefix()
	if !res.Found() {
		return Location{}, network, false, nil
	}
	off := res.Offset()
	d.mu.RLock()
	loc, ok := d.cache[off]
	d.mu.RUnlock()
	if ok {
		return loc, network, true, nil
	}
	var rec struct {
		Country struct {
			ISOCode string `maxminddb:"iso_code"`
		} `maxminddb:"country"`
		Continent struct {
			Code string `maxminddb:"code"`
		} `maxminddb:"continent"`
		Location struct {
			Latitude  *float64 `maxminddb:"latitude"`
			Longitude *float64 `maxminddb:"longitude"`
		} `maxminddb:"location"`
	}
	if err := res.Decode(&rec); err != nil {
		return Location{}, network, false, fmt.Errorf("geodb: decode %s: %w", addr, err)
	}
	loc = Location{Country: rec.Country.ISOCode, Continent: rec.Continent.Code}
	if rec.Location.Latitude != nil && rec.Location.Longitude != nil {
		loc.Latitude, loc.Longitude, loc.HasCoords = *rec.Location.Latitude, *rec.Location.Longitude, true
	}
	d.mu.Lock()
	if len(d.cache) < maxCachedRecords {
		d.cache[off] = loc
	}
	d.mu.Unlock()
	return loc, network, true, nil
}

// ASN returns the autonomous system number of addr and the database network that holds it.
func (d *DB) ASN(addr netip.Addr) (asn uint32, network netip.Prefix, found bool, err error) {
	res := d.r.Lookup(addr)
	if err := res.Err(); err != nil {
		return 0, netip.Prefix{}, false, fmt.Errorf("geodb: lookup %s: %w", addr, err)
	}
	network = res.Prefix()
	if !res.Found() {
		return 0, network, false, nil
	}
	off := res.Offset()
	d.mu.RLock()
	n, ok := d.asns[off]
	d.mu.RUnlock()
	if !ok {
		var rec struct {
			ASN uint32 `maxminddb:"autonomous_system_number"`
		}
		if err := res.Decode(&rec); err != nil {
			return 0, network, false, fmt.Errorf("geodb: decode %s: %w", addr, err)
		}
		n = rec.ASN
		d.mu.Lock()
		if len(d.asns) < maxCachedRecords {
			d.asns[off] = n
		}
		d.mu.Unlock()
	}
	return n, network, n != 0, nil
}
