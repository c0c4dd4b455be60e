// Package geodb builds and reads MaxMind-format (.mmdb) GeoIP databases for the GeoDNS steering
// in dnsredirect: GeoLite2-City-shaped databases (country, continent, coordinates) and
// GeoLite2-ASN-shaped databases (AS number and organisation).
//
// Real GeoLite2 files cannot be downloaded here, so Build writes databases of the same shape
// from a CSV; the reader works the same on a real GeoLite2 file.
package geodb

import (
	_ "embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/outpost-proxy/outpost/internal/atomicfile"
)

// DemoCSV is the embedded CSV of the demo regions (documentation address ranges).
//
//go:embed demo.csv
var DemoCSV []byte

// Kind is the shape of a database.
type Kind string

// The database shapes Build writes.
const (
	City Kind = "city" // GeoLite2-City: country, continent, location
	ASN  Kind = "asn"  // GeoLite2-ASN: autonomous_system_number/organization
)

// Row is one CSV line: a network and what is known about it.
type Row struct {
	Network      netip.Prefix
	Country      string  // ISO 3166-1 alpha-2, e.g. "DE"
	Continent    string  // two-letter continent code, e.g. "EU"
	Latitude     float64 // degrees
	Longitude    float64 // degrees
	HasCoords    bool    // latitude/longitude columns were given
	ASN          uint32  // 0: none
	Organisation string
}

// ParseCSV reads rows of cidr,country,continent,latitude,longitude,asn,organisation. Blank
// lines, lines starting with '#' and a header line starting with "cidr" are skipped; empty
// fields mean unknown.
func ParseCSV(r io.Reader) ([]Row, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	var rows []Row
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("geodb: csv: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) > 0 && strings.EqualFold(strings.TrimSpace(rec[0]), "cidr") {
			continue
		}
		row, err := parseRow(rec)
		if err != nil {
			return nil, fmt.Errorf("geodb: csv line %d: %w", line, err)
		}
		rows = append(rows, row)
	}
}

// parseRow turns one CSV record into a Row.
func parseRow(rec []string) (Row, error) {
	if len(rec) != 7 {
		return Row{}, fmt.Errorf("want 7 fields (cidr,country,continent,latitude,longitude,asn,organisation), got %d", len(rec))
	}
	for i := range rec {
		rec[i] = strings.TrimSpace(rec[i])
	}
	p, err := netip.ParsePrefix(rec[0])
	if err != nil {
		return Row{}, fmt.Errorf("cidr: %w", err)
	}
	row := Row{Network: p.Masked(), Country: strings.ToUpper(rec[1]), Continent: strings.ToUpper(rec[2]), Organisation: rec[6]}
	if rec[3] != "" || rec[4] != "" {
		if row.Latitude, err = parseCoord(rec[3], 90); err != nil {
			return Row{}, fmt.Errorf("latitude: %w", err)
		}
		if row.Longitude, err = parseCoord(rec[4], 180); err != nil {
			return Row{}, fmt.Errorf("longitude: %w", err)
		}
		row.HasCoords = true
	}
	if rec[5] != "" {
		n, err := strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(rec[5]), "AS"), 10, 32)
		if err != nil || n == 0 {
			return Row{}, fmt.Errorf("asn: %q is not an AS number", rec[5])
		}
		row.ASN = uint32(n)
	}
	return row, nil
}

func parseCoord(s string, limit float64) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < -limit || v > limit {
		return 0, fmt.Errorf("%q is not a coordinate within ±%v", s, limit)
	}
	return v, nil
}

// Build writes a database of the given kind holding rows to w. Reserved networks (the
// documentation ranges the demo uses) are included.
func Build(kind Kind, rows []Row, w io.Writer) error {
	dbType := map[Kind]string{City: "GeoLite2-City", ASN: "GeoLite2-ASN"}[kind]
	if dbType == "" {
		return fmt.Errorf("geodb: unknown database type %q (want city or asn)", kind)
	}
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            dbType,
		Description:             map[string]string{"en": "Outpost demo " + string(kind) + " database"},
		Languages:               []string{"en"},
		IncludeReservedNetworks: true,
		RecordSize:              28,
	})
	if err != nil {
		return fmt.Errorf("geodb: %w", err)
	}
	for _, r := range rows {
		rec := record(kind, r)
		if rec == nil {
			continue
		}
		n := &net.IPNet{IP: r.Network.Addr().AsSlice(), Mask: net.CIDRMask(r.Network.Bits(), r.Network.Addr().BitLen())}
		if err := tree.Insert(n, rec); err != nil {
			return fmt.Errorf("geodb: insert %s: %w", r.Network, err)
		}
	}
	if _, err := tree.WriteTo(w); err != nil {
		return fmt.Errorf("geodb: write: %w", err)
	}
	return nil
}

// record is the GeoLite2-shaped map for one row, or nil when the row has nothing for kind.
func record(kind Kind, r Row) mmdbtype.Map {
	if kind == ASN {
		if r.ASN == 0 {
			return nil
		}
		return mmdbtype.Map{
			"autonomous_system_number":       mmdbtype.Uint32(r.ASN),
			"autonomous_system_organization": mmdbtype.String(r.Organisation),
		}
	}
	m := mmdbtype.Map{}
	if r.Country != "" {
		m["country"] = mmdbtype.Map{"iso_code": mmdbtype.String(r.Country)}
	}
	if r.Continent != "" {
		m["continent"] = mmdbtype.Map{"code": mmdbtype.String(r.Continent)}
	}
	if r.HasCoords {
		m["location"] = mmdbtype.Map{
			"latitude": mmdbtype.Float64(r.Latitude), "longitude": mmdbtype.Float64(r.Longitude),
			"accuracy_radius": mmdbtype.Uint16(100),
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// BuildFile reads the CSV at csvPath (or data when csvPath is "") and writes the database to out
// atomically (temporary file, fsync, rename).
func BuildFile(kind Kind, csvPath string, data []byte, out string) error {
	if csvPath != "" {
		b, err := os.ReadFile(csvPath)
		if err != nil {
			return fmt.Errorf("geodb: %w", err)
		}
		data = b
	}
	rows, err := ParseCSV(strings.NewReader(string(data)))
	if err != nil {
		return err
	}
	return atomicfile.Write(out, 0o644, func(w io.Writer) error { return Build(kind, rows, w) })
}
