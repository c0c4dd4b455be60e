package outpost

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// maxParams is the style rule's bound on a function's parameters (receiver not counted):
// per-request state lives in one value, not in long parameter lists.
const maxParams = 7

// TestNoLongParameterLists parses every non-test Go file of the module and fails for each
// function, method or function literal that takes more than maxParams parameters.
func TestNoLongParameterLists(t *testing.T) {
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		ast.Inspect(f, func(n ast.Node) bool {
			var ft *ast.FuncType
			name := "function literal"
			switch x := n.(type) {
			case *ast.FuncDecl:
				ft, name = x.Type, x.Name.Name
			case *ast.FuncLit:
				ft = x.Type
			default:
				return true
			}
			if n := countParams(ft); n > maxParams {
				t.Errorf("%s: %s takes %d parameters (at most %d: gather per-request state in one value)",
					fset.Position(ft.Pos()), name, n, maxParams)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("only %d Go files found: the walk is not at the module root", files)
	}
}

// countParams counts a signature's parameters ("a, b int" is two).
func countParams(ft *ast.FuncType) int {
	n := 0
	for _, f := range ft.Params.List {
		n += max(len(f.Names), 1)
	}
	return n
}

// TestCountParams: the counter itself, on signatures with grouped, unnamed and variadic
// parameters.
func TestCountParams(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want int
	}{
		{"func(a, b int, c string)", 3},
		{"func(int, string, ...any)", 3},
		{"func()", 0},
		{"func(w io.Writer, r *http.Request, f Fetcher, key string, h uint64, rq *x, lr y, fwd string)", 8},
	} {
		e, err := parser.ParseExpr(tc.src)
		if err != nil {
			t.Fatal(err)
		}
		if got := countParams(e.(*ast.FuncType)); got != tc.want {
			t.Errorf("%s: %d parameters, want %d", tc.src, got, tc.want)
		}
	}
}
