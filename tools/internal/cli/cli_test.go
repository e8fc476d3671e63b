package cli_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/vigil-ota/vigil/internal/settings/settingsdoc"
	"github.com/vigil-ota/vigil/tools/internal/cli"
)

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cli.Run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestKeysGenerateWritesPairsAndPrintsKeyIDs(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := run("keys", "generate", "root-1", "targets", "--dir", dir, "--output", "json")
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var keys []cli.GeneratedKey
	if err := json.Unmarshal([]byte(out), &keys); err != nil {
		t.Fatalf("json output %q: %v", out, err)
	}
	if len(keys) != 2 || len(keys[0].KeyID) != 64 || keys[0].KeyID == keys[1].KeyID {
		t.Fatalf("keys %+v", keys)
	}
	for _, k := range keys {
		for _, p := range []string{k.PrivateKey, k.PublicKey} {
			if _, err := os.Stat(p); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestKeysGenerateRefusesAllWhenAnyExists(t *testing.T) {
	dir := t.TempDir()
	if code, _, errs := run("keys", "generate", "targets", "--dir", dir); code != 0 {
		t.Fatal(errs)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "targets.key"))
	code, _, errs := run("keys", "generate", "new-one", "targets", "--dir", dir)
	if code != cli.ExitUsage || !strings.Contains(errs, "already exists") || !strings.Contains(errs, "nothing was written") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "new-one.key")); !os.IsNotExist(err) {
		t.Fatal("a key was written although the command refused")
	}
	after, _ := os.ReadFile(filepath.Join(dir, "targets.key"))
	if !bytes.Equal(before, after) {
		t.Fatal("existing key changed")
	}
}

func TestBadUsageExitsTwoAndNamesTheProblem(t *testing.T) {
	for _, args := range [][]string{
		{"keys", "generate"},
		{"keys", "generate", "../etc/passwd"},
		{"keys", "generate", "a", "a"},
		{"keys", "generate", "a", "--output", "xml"},
		{"keys", "generate", "a", "--no-such-flag"},
		{"no-such-command"},
	} {
		code, _, errs := run(append(args, "--dir", t.TempDir())...)
		if code != cli.ExitUsage || errs == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
}

func TestHelpTeachesTheKeyLayout(t *testing.T) {
	code, out, _ := run("keys", "generate", "--help")
	if code != 0 || !strings.Contains(out, "root-1 root-2 root-3") || !strings.Contains(out, "--force") {
		t.Fatalf("help: %s", out)
	}
}

func TestKeysIDMatchesGenerate(t *testing.T) {
	dir := t.TempDir()
	_, out, _ := run("keys", "generate", "snapshot", "--dir", dir, "-o", "json")
	var gen []cli.GeneratedKey
	json.Unmarshal([]byte(out), &gen)
	code, out, errs := run("keys", "id", filepath.Join(dir, "snapshot.pub"))
	if code != 0 || !strings.HasPrefix(out, gen[0].KeyID) {
		t.Fatalf("exit %d: %q (%s), want key id %s", code, out, errs, gen[0].KeyID)
	}
	if code, _, _ := run("keys", "id", filepath.Join(dir, "snapshot.key")); code != cli.ExitUsage {
		t.Fatalf("a private key file as public: exit %d", code)
	}
}

func TestConfigurationDocListsEveryCLISetting(t *testing.T) {
	settingsdoc.CheckDocSection(t, "cli-settings", cli.Markdown())
}

// Every command teaches: its help starts with a sentence (Short, capital
// first letter, no trailing period), and every command that does something
// shows an example.
func TestEveryCommandsHelpStartsWithASentenceAndHasAnExample(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := c.CommandPath()
		if c.Short == "" || !unicode.IsUpper([]rune(c.Short)[0]) || strings.HasSuffix(c.Short, ".") {
			t.Errorf("%s: Short %q is not a sentence", path, c.Short)
		}
		if c.Runnable() && c.Example == "" && c.Name() != "version" && c.Name() != "help" && c.Name() != "completion" {
			t.Errorf("%s: no example", path)
		}
		for _, sub := range c.Commands() {
			if !sub.Hidden {
				walk(sub)
			}
		}
	}
	walk(cli.Commands())
}

// Every `vigil …` command line in the docs and the README names a command
// that exists and only flags that command has, so a renamed command or flag
// fails here rather than in a reader's terminal.
func TestDocumentedCommandLinesExist(t *testing.T) {
	root := cli.Commands()
	docs, _ := filepath.Glob(filepath.Join("..", "..", "..", "docs", "*.md"))
	docs = append(docs, filepath.Join("..", "..", "..", "README.md"))
	start := regexp.MustCompile(`(?:^|\$ |bin/|\s)vigil ([a-z].*)$`)
	for _, d := range docs {
		b, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		// Join continued lines, then look at each line that runs vigil.
		text := strings.ReplaceAll(string(b), "\\\n", " ")
		for _, line := range strings.Split(text, "\n") {
			m := start.FindStringSubmatch(strings.TrimSpace(line))
			if m == nil || strings.Contains(line, "vigil-") {
				continue
			}
			fields := strings.Fields(strings.Split(m[1], "#")[0])
			cmd, rest, err := root.Find(fields)
			if err != nil || cmd == root {
				t.Errorf("%s: %q names no vigil command", filepath.Base(d), "vigil "+m[1])
				continue
			}
			for _, f := range rest {
				if !strings.HasPrefix(f, "--") {
					continue
				}
				name := strings.TrimPrefix(strings.SplitN(f, "=", 2)[0], "--")
				name = strings.Trim(name, "`'\",.;:)")
				if name == "" || cmd.Flags().Lookup(name) != nil || cmd.InheritedFlags().Lookup(name) != nil || root.PersistentFlags().Lookup(name) != nil {
					continue
				}
				t.Errorf("%s: %q: vigil %s has no flag --%s", filepath.Base(d), strings.TrimSpace(line), cmd.CommandPath(), name)
			}
		}
	}
}
