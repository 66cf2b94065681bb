package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/datasets"
	"github.com/matsteer/matsteer/models"
)

func dataCommand() *cli.Command {
	datasetFlag := &cli.StringSliceFlag{Name: "dataset", Usage: "only these datasets: " + strings.Join(datasets.UpstreamDatasets, ", ") + " (default: all)"}
	return &cli.Command{
		Name:  "data",
		Usage: "fetch the evaluation datasets (TruthfulQA, BBQ, ToxiGen) from upstream, pinned and verified",
		Description: `The data directory is $` + datasets.DataEnv + ` when set (a local copy, used as it is: nothing is
downloaded), else the "data" folder of the cache ($MATSTEER_CACHE, default ~/.cache/matsteer).
"pull" fetches every file from its upstream repository at a pinned commit (TruthfulQA: its main
branch, the commit is not known) and checks its size and sha256; each file is written to a temporary
file and renamed into place only when it matches, so a failed or interrupted pull leaves complete
files only and the next pull fetches what is missing. With $` + datasets.DataEnv + ` set, "pull" checks
that copy instead. "path" prints the data directory, "list" the sources and what the directory holds.`,
		Subcommands: []*cli.Command{
			{
				Name:      "pull",
				Usage:     "download the datasets into the cache (or check $" + datasets.DataEnv + "); prints the data directory",
				UsageText: "matsteer data pull [--dataset NAME ...] [--dir DIR] [--mirror URL]",
				Flags: []cli.Flag{
					datasetFlag,
					&cli.StringFlag{Name: "dir", Usage: "data directory to fill (default: the cache's, or $" + datasets.DataEnv + ")"},
					&cli.StringFlag{Name: "mirror", Value: datasets.DefaultUpstreamBase, Usage: "base URL of the raw files, BASE/OWNER/REPO/COMMIT/PATH"},
					&cli.DurationFlag{Name: "stall-timeout", Value: models.DefaultStallTimeout, Usage: "give up on a file that receives nothing for this long (1s..1h)"},
				},
				Action: runDataPull,
			},
			{
				Name:   "path",
				Usage:  "print the data directory",
				Action: func(c *cli.Context) error { d, _ := datasets.DataDir(); fmt.Fprintln(c.App.Writer, d); return nil },
			},
			{
				Name:   "list",
				Usage:  "list the upstream sources and whether the data directory holds their files",
				Flags:  []cli.Flag{datasetFlag},
				Action: runDataList,
			},
		},
	}
}

func runDataPull(c *cli.Context) error {
	names := c.StringSlice("dataset")
	if _, err := datasets.UpstreamsFor(names); err != nil {
		return fmt.Errorf("--dataset: %w", err)
	}
	if st := c.Duration("stall-timeout"); st < time.Second || st > time.Hour {
		return fmt.Errorf("--stall-timeout %s: want 1s..1h", st)
	}
	base := c.String("mirror")
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--mirror %q: want an http or https URL", base)
	}
	dir, local := datasets.DataDir()
	if c.IsSet("dir") {
		dir, local = c.String("dir"), false
		if dir == "" {
			return errors.New("--dir: empty path")
		}
	}
	stderr := c.App.ErrWriter
	if local {
		return checkLocalData(c, dir, names)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	f := &models.Fetcher{Progress: stderr, Log: stderr}
	res, err := datasets.Pull(c.Context, dir, datasets.PullOptions{Fetcher: f, Base: base, Datasets: names, Stall: c.Duration("stall-timeout"), Log: stderr})
	if err != nil {
		if c.Context.Err() != nil {
			return c.Context.Err()
		}
		return err
	}
	fmt.Fprintf(stderr, "data: %d files fetched, %d already present and verified\n", res.Fetched, res.Present)
	fmt.Fprintln(c.App.Writer, dir)
	return nil
}

// checkLocalData checks a $MATSTEER_DATA copy: every file must be there;
// a file that differs from its pin is reported (a local copy may be
// newer) but not replaced.
func checkLocalData(c *cli.Context, dir string, names []string) error {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("$%s=%s is not a directory; unset it to pull the data into the cache", datasets.DataEnv, dir)
	}
	probs, err := datasets.VerifyData(dir, names)
	if err != nil {
		return err
	}
	var missing []string
	for _, p := range probs {
		if p.Missing {
			missing = append(missing, p.Path)
		} else {
			fmt.Fprintf(c.App.ErrWriter, "warning: %s differs from the pinned upstream file (%v)\n", filepath.Join(dir, p.Path), p.Err)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("$%s=%s lacks %d of the datasets' files (first: %s); unset it to pull them into the cache", datasets.DataEnv, dir, len(missing), missing[0])
	}
	fmt.Fprintf(c.App.ErrWriter, "data: using $%s=%s (nothing downloaded)\n", datasets.DataEnv, dir)
	fmt.Fprintln(c.App.Writer, dir)
	return nil
}

func runDataList(c *cli.Context) error {
	ups, err := datasets.UpstreamsFor(c.StringSlice("dataset"))
	if err != nil {
		return fmt.Errorf("--dataset: %w", err)
	}
	dir, local := datasets.DataDir()
	where := "cache"
	if local {
		where = "$" + datasets.DataEnv
	}
	fmt.Fprintf(c.App.Writer, "data directory: %s (%s)\n", dir, where)
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "DATASET\tREPOSITORY\tCOMMIT\tFILES\tSIZE\tPRESENT\tNOTE")
	for _, u := range ups {
		var size int64
		present := 0
		for _, f := range u.Files {
			size += f.Size
			if ok, _ := models.VerifyFile(filepath.Join(dir, u.Dataset, filepath.FromSlash(f.Path)), f.Size, f.SHA256); ok {
				present++
			}
		}
		commit := u.Commit
		if commit == "" {
			commit = "unknown (" + u.Ref + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%.1f MB\t%d/%d\t%s\n", u.Dataset, "github.com/"+u.Repo, commit, len(u.Files), float64(size)/1e6, present, len(u.Files), u.Note)
	}
	return w.Flush()
}
