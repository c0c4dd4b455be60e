package geodb

import (
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildDemo writes the demo databases of both kinds into a temp dir.
func buildDemo(t *testing.T) (city, asn string) {
	t.Helper()
	dir := t.TempDir()
	city, asn = filepath.Join(dir, "city.mmdb"), filepath.Join(dir, "asn.mmdb")
	if err := BuildFile(City, "", DemoCSV, city); err != nil {
		t.Fatal(err)
	}
	if err := BuildFile(ASN, "", DemoCSV, asn); err != nil {
		t.Fatal(err)
	}
	return city, asn
}

func TestDemoDatabases(t *testing.T) {
	city, asn := buildDemo(t)
	cdb, err := Open(city)
	if err != nil {
		t.Fatal(err)
	}
	defer cdb.Close()
	adb, err := Open(asn)
	if err != nil {
		t.Fatal(err)
	}
	defer adb.Close()
	if cdb.Type() != "GeoLite2-City" || adb.Type() != "GeoLite2-ASN" {
		t.Errorf("types %q %q", cdb.Type(), adb.Type())
	}
	for _, tc := range []struct {
		addr, country, network string
		lat                    float64
		asn                    uint32
	}{
		{"192.0.2.9", "DE", "192.0.2.0/24", 50.1109, 64500},
		{"198.51.100.200", "US", "198.51.100.0/24", 40.7128, 64501},
		{"203.0.113.7", "JP", "203.0.113.0/24", 35.6762, 64502},
		{"2001:db8:3::1", "AU", "2001:db8:3::/48", -33.8688, 64512},
	} {
		loc, network, found, err := cdb.City(netip.MustParseAddr(tc.addr))
		if err != nil || !found || loc.Country != tc.country || loc.Latitude != tc.lat || !loc.HasCoords || network.String() != tc.network {
			t.Errorf("%s: city %+v %s %v %v", tc.addr, loc, network, found, err)
		}
		n, network, found, err := adb.ASN(netip.MustParseAddr(tc.addr))
		if err != nil || !found || n != tc.asn || network.String() != tc.network {
			t.Errorf("%s: asn %d %s %v %v", tc.addr, n, network, found, err)
		}
	}
	_, network, found, err := cdb.City(netip.MustParseAddr("10.1.2.3"))
	if err != nil || found || network.Bits() == 0 || !network.Contains(netip.MustParseAddr("10.1.2.3")) {
		t.Errorf("absent address: %s %v %v (want the empty block around it)", network, found, err)
	}
}

// TestMmdblookup checks the files with libmaxminddb's reader, as a user would.
func TestMmdblookup(t *testing.T) {
	bin, err := exec.LookPath("mmdblookup")
	if err != nil {
		t.Skip("mmdblookup not installed (Debian package mmdb-bin)")
	}
	city, asn := buildDemo(t)
	for _, tc := range []struct{ file, ip, path, want string }{
		{city, "203.0.113.7", "country iso_code", `"JP"`},
		{city, "192.0.2.1", "location latitude", "50.110900"},
		{asn, "198.51.100.1", "autonomous_system_number", "64501"},
	} {
		args := append([]string{"--file", tc.file, "--ip", tc.ip}, strings.Fields(tc.path)...)
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("mmdblookup %v: %v\n%s", args, err, out)
		}
	}
}

func TestParseCSVErrors(t *testing.T) {
	for name, text := range map[string]string{
		"bad cidr":          "300.0.0.0/8,DE,EU,1,1,1,x\n",
		"few fields":        "192.0.2.0/24,DE\n",
		"bad latitude":      "192.0.2.0/24,DE,EU,91,1,1,x\n",
		"bad asn":           "192.0.2.0/24,DE,EU,1,1,ASx,x\n",
		"half a coordinate": "192.0.2.0/24,DE,EU,1,,1,x\n",
	} {
		if _, err := ParseCSV(strings.NewReader(text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	rows, err := ParseCSV(strings.NewReader("# c\ncidr,country,continent,latitude,longitude,asn,organisation\n192.0.2.0/24,de,eu,,,AS7,Org\n"))
	if err != nil || len(rows) != 1 || rows[0].ASN != 7 || rows[0].HasCoords || rows[0].Country != "DE" {
		t.Errorf("rows %+v %v", rows, err)
	}
}

func FuzzParseCSV(f *testing.F) {
	f.Add(string(DemoCSV))
	f.Add("192.0.2.0/24,,,,,,\n")
	f.Fuzz(func(t *testing.T, s string) {
		rows, err := ParseCSV(strings.NewReader(s))
		if err != nil {
			return
		}
		if err := Build(City, rows, discard{}); err != nil && !strings.Contains(err.Error(), "insert") {
			t.Fatalf("build: %v", err)
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
