package datasets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/matsteer/matsteer/models"
)

// DataEnv names the environment variable of a local data directory (for
// example the shared copy beside the project) that is used instead of the
// cache: with it set, nothing is downloaded.
const DataEnv = "MATSTEER_DATA"

// DefaultUpstreamBase is where Pull fetches files from: GitHub's raw file
// host, URL BASE/OWNER/REPO/REF/PATH.
const DefaultUpstreamBase = "https://raw.githubusercontent.com"

// UpstreamFile is one file of an upstream repository at its place in the
// data directory.
type UpstreamFile struct {
	Path     string // under DIR/<Dataset>/, the layout of the shared copy
	Upstream string // path in the repository
	Size     int64
	SHA256   string
}

// Upstream is one repository the evaluation data come from.
type Upstream struct {
	Dataset string // folder of the data directory: truthfulqa, bbq, toxigen
	Repo    string // GitHub owner/name
	// Commit is the pinned commit, or "" when it is not known; Ref is what
	// is fetched (the commit, or else a branch). Either way every file is
	// checked against its SHA-256, so a moved branch fails the pull
	// instead of giving other data.
	Commit, Ref string
	Note        string
	Files       []UpstreamFile
}

// Upstreams lists the upstream files of the evaluation data, byte for byte
// those of the shared copy (../shared/data): the sizes and SHA-256 sums are
// those of its files. The BBQ, ToxiGen and SafeNLP commits are the ones
// whose trees hold exactly these files (every file's git blob id compared
// with the shared copy's). TruthfulQA's commit is not recorded with the
// shared copy and could not be established (no commit of the history
// available here holds these files), so it is fetched from its main branch,
// still pinned by checksum.
func Upstreams() []Upstream {
	return []Upstream{
		{
			Dataset: TaskTruthfulQA, Repo: "sylinrl/TruthfulQA", Ref: "main",
			Note: "commit not known: fetched from branch main and checked against the pinned sha256 sums",
			Files: []UpstreamFile{
				{"TruthfulQA.csv", "TruthfulQA.csv", 477048, "967b82fb1fb6274e4971c6c80caa9d04f844c512b1033c146f26c78270cd384b"},
				{"data/mc_task.json", "data/mc_task.json", 771566, "75b84d5cc8f0e287c055db1857808e734ea53ade8ee68aad2d007f38896330a8"},
				{"data/v0/mc_task.json", "data/v0/mc_task.json", 726323, "131e6f4156297bee09b38279e2fa847e4359c200504eca99ea3fab4b2d3a6144"},
				{"data/v0/TruthfulQA.csv", "data/v0/TruthfulQA.csv", 444541, "f4fcc4a841d4474c46a4719c295c6df5f12eef14c187fbb9637a29e70d9ece00"},
				{"LICENSE", "LICENSE", 11558, "1eb85fc97224598dad1852b5d6483bbcf0aa8608790dcc657a5a2a761ae9c8c6"},
				{"UPSTREAM_README.md", "README.md", 10437, "249deab8a6130f799900878970a26688a5322062f62e23d84487a5db1da6af1e"},
			},
		},
		{
			Dataset: TaskBBQ, Repo: "nyu-mll/BBQ",
			Commit: "bea11bd97d79217245b5871acd247b9d6eb24598", Ref: "bea11bd97d79217245b5871acd247b9d6eb24598",
			Note: "6 of the 11 categories, as in the shared copy",
			Files: []UpstreamFile{
				{"data/Age.jsonl", "data/Age.jsonl", 3091834, "46e805b3fc2d8cbd26eeb8e8430d98cf7b2dc9c83574ff3674e8ce4f0fca2a60"},
				{"data/Disability_status.jsonl", "data/Disability_status.jsonl", 1336984, "375d40d9b71f056150264445ec189b13934998f3f49a1e311aa7578eb3b45e5f"},
				{"data/Nationality.jsonl", "data/Nationality.jsonl", 2900040, "a583e74666aec0341ded8aa3983e7cad694eb24de72c254d28b2df3035720090"},
				{"data/Physical_appearance.jsonl", "data/Physical_appearance.jsonl", 1347476, "e48d7e13508565f4801574e611043470c25c95a0a62af3699cb5ee7cb02608fb"},
				{"data/Religion.jsonl", "data/Religion.jsonl", 1118728, "cb9555f9f3454a52cd2df85956b59bd7fcca5aa922c8527693b1164d08417616"},
				{"data/Sexual_orientation.jsonl", "data/Sexual_orientation.jsonl", 729010, "2c71036b9e7584fe589c42aef32c1a42bc01b9a5e9b1b8704342630cdb08cefd"},
				{"LICENSE", "LICENSE", 18649, "95df2e9564862e51d69683a899b6dcc8218d577057bdf67322880769ff85f29e"},
				{"UPSTREAM_README.md", "README.md", 5603, "9b98910f37b3c1b0dc12170ece772847e37bbb514e3158f5cfce18aa8cc703b8"},
			},
		},
		{
			Dataset: TaskToxiGen, Repo: "microsoft/TOXIGEN",
			Commit: "01517e814639e0334c920a3c502036c8158aac87", Ref: "01517e814639e0334c920a3c502036c8158aac87",
			Note: "prompt files",
			Files: []UpstreamFile{
				{"prompts/hate_asian_1k.txt", "prompts/hate_asian_1k.txt", 499093, "0504967034122b691c16dbef10db3acb16492808ecc66d8cd2b2ae87454fd655"},
				{"prompts/hate_bisexual_1k.txt", "prompts/hate_bisexual_1k.txt", 443794, "09a5b6995d0cd0ba940ae9f9d67e8db1451352dcf99ee273315efc34915fc1e3"},
				{"prompts/hate_black_1k.txt", "prompts/hate_black_1k.txt", 741295, "29ef85c5610d77a3a4bb050826ffb6e124ee48e11f5b63d34b29d616ef2ee1c3"},
				{"prompts/hate_chinese_1k.txt", "prompts/hate_chinese_1k.txt", 380934, "7f99029bad4f71caff707787d6799d1d654fee140f22418691d1244e81ed2b21"},
				{"prompts/hate_immigrant_1k.txt", "prompts/hate_immigrant_1k.txt", 281309, "bebb38d8786f498ca2153f965cdfba14e0490d5216781091106e5ac8ebbe0574"},
				{"prompts/hate_jewish_1k.txt", "prompts/hate_jewish_1k.txt", 569538, "f5bdf83ef8fd32435241cc5fcfc337c0a57bcf64eb7fb4aa3c8fe15eb86f1fd2"},
				{"prompts/hate_latino_1k.txt", "prompts/hate_latino_1k.txt", 704000, "60988864d728cc7b1644a72419181efc1d82b2342f636a5e76f34805e4a88537"},
				{"prompts/hate_lgbtq_1k.txt", "prompts/hate_lgbtq_1k.txt", 573075, "7fb7da0d4ad1a485824111ab60f6030f01dd92dbc9342c76534c78faec061a16"},
				{"prompts/hate_mental_disability_1k.txt", "prompts/hate_mental_disability_1k.txt", 476620, "5a71f51bf998c5111b5dd6d0b7d7edbaa445f27defbc1fdb798dd920974ad3e2"},
				{"prompts/hate_mexican_1k.txt", "prompts/hate_mexican_1k.txt", 671444, "2fad743ced369e4a280165b7ea909f8cb30921840cbe5f9f454243cf9e4dcfd5"},
				{"prompts/hate_middle_east_1k.txt", "prompts/hate_middle_east_1k.txt", 422551, "29ffcca6defd3e4f2edd2237417c7617a3c7380de8f9c6cf13d8c087fa595223"},
				{"prompts/hate_muslim_1k.txt", "prompts/hate_muslim_1k.txt", 421760, "aaa18a9bf72928f71cf3d0d8d4dfa298faeb015a8580f5c7e21ef7afaae3241a"},
				{"prompts/hate_native_american_1k.txt", "prompts/hate_native_american_1k.txt", 476000, "01c2077f1007268ca11588d08f909ed9c01178148205ae417618d276227b9bbc"},
				{"prompts/hate_physical_disability_1k.txt", "prompts/hate_physical_disability_1k.txt", 409643, "8cada46239a52a741faf47677d1ffbfa06dc31d3e480a03935a5aec89ea02dee"},
				{"prompts/hate_trans_1k.txt", "prompts/hate_trans_1k.txt", 581554, "6188dfd52082e552230a1332e2bf83a23e8410c5f353d32dca79f259c8daf8b8"},
				{"prompts/hate_women_1k.txt", "prompts/hate_women_1k.txt", 385583, "eecdf3006847c267b9399045ce2fe002f884fe5b682dbef450f3477d7bb24497"},
				{"prompts/neutral_asian_1k.txt", "prompts/neutral_asian_1k.txt", 611895, "a5f0c58ae51dc8771d1779009ffc3017c5071c529b01f260600fa96c164ceb44"},
				{"prompts/neutral_bisexual_1k.txt", "prompts/neutral_bisexual_1k.txt", 911612, "8a3391bb9a178295f619c3e92ba9bc177225c392d90ac9f4ab5702c4140d6e51"},
				{"prompts/neutral_black_1k.txt", "prompts/neutral_black_1k.txt", 853769, "8e1da39bf32818c14156f4de32ef6a35f701e1737540dafb02bdf8eb03206a6b"},
				{"prompts/neutral_chinese_1k.txt", "prompts/neutral_chinese_1k.txt", 408062, "aad50dde2f68d75804e44b939a700b8e37ef93a152cae1a045f8881f89c7e982"},
				{"prompts/neutral_immigrant_1k.txt", "prompts/neutral_immigrant_1k.txt", 338243, "1807799ed9e45c428792da879f83d874e3f589c63b6fd746716fafe2b117c3d4"},
				{"prompts/neutral_jewish_1k.txt", "prompts/neutral_jewish_1k.txt", 645674, "c804dc98c4a7d90105a9848a66cde4eb05db9a63a8d2668387e46bba90c28380"},
				{"prompts/neutral_latino_1k.txt", "prompts/neutral_latino_1k.txt", 466000, "7fad9d0003e54e5f18c1dafb7e21b2295dae5bb7290e9c649eadb7a450b80957"},
				{"prompts/neutral_lgbtq_1k.txt", "prompts/neutral_lgbtq_1k.txt", 910319, "7cefb606353cfff8c9ee4af9b2044f039e698dc8117b7c9414dd02dedca51ba9"},
				{"prompts/neutral_mental_disability_1k.txt", "prompts/neutral_mental_disability_1k.txt", 552905, "8f513551d7c86c3fd6df5d0a4bb8fd831c45c24d917d69ab3a61f1a984edf3d0"},
				{"prompts/neutral_mexican_1k.txt", "prompts/neutral_mexican_1k.txt", 479603, "e16aaa8a4606b3bf08139b9c91067cb63d620dd5a3a94e63b8ebc3f4198b1597"},
				{"prompts/neutral_middle_east_1k.txt", "prompts/neutral_middle_east_1k.txt", 411319, "a4f23dfbe5bd0dec6a2018b2fe1ca9805d2a7ca76791da5300c72e6bcdabcdf9"},
				{"prompts/neutral_muslim_1k.txt", "prompts/neutral_muslim_1k.txt", 487659, "d378bc96f388cef1be42954246b67955dfe3d42cfcbf2ffc2924856c2fb933cd"},
				{"prompts/neutral_native_american_1k.txt", "prompts/neutral_native_american_1k.txt", 582993, "8affc8490fb2fac8ad72041cce775fc9442ebea95a64a7a2274825e1231ef265"},
				{"prompts/neutral_physical_disability_1k.txt", "prompts/neutral_physical_disability_1k.txt", 454497, "30ae4d6774054136a635cd9097dd4fe530ec2f407932f775e8093afa795cff8e"},
				{"prompts/neutral_women_1k.txt", "prompts/neutral_women_1k.txt", 390963, "dfad74fee637cd35415fc9b3a0b8d27d799e5613da5d9be0fdf93774fe813208"},
				{"LICENSE.txt", "LICENSE.txt", 3539, "56f1dd6be56e0afd33c2c070fa73448fb0eddcbcd60a55a53a8a26a0f6b4c205"},
				{"UPSTREAM_README.md", "README.md", 8957, "ac4b63d0b74d830750836c2ca755272404dfb3e1704ac2068480ebf8c6a43495"},
			},
		},
		{
			Dataset: TaskToxiGen, Repo: "microsoft/SafeNLP",
			Commit: "e351b6cb892284cf843b88e363b1a6dbaded584e", Ref: "e351b6cb892284cf843b88e363b1a6dbaded584e",
			Note: "the human-annotated ToxiGen statements",
			Files: []UpstreamFile{
				{"annotated/toxiGen.json", "data/toxiGen.json", 1661792, "42863b997f545833b8c9bfe7fc950aeaccc274d49f7386384db147face745fc3"},
				{"annotated/TOXIGEN_LICENSE", "data/TOXIGEN LICENSE", 3539, "56f1dd6be56e0afd33c2c070fa73448fb0eddcbcd60a55a53a8a26a0f6b4c205"},
				{"annotated/SafeNLP_LICENSE", "LICENSE", 1120, "386e3ac8535699d89fc33c6f2caa5b18ef5f6ea8d11a9885beaed181290da544"},
				{"annotated/SafeNLP_README.md", "README.md", 9906, "204d12774bad4d6cb6bf5da5903bf5406b69ad6af63df48d79b2c2033eb9ee12"},
			},
		},
	}
}

// UpstreamDatasets are the dataset names Pull accepts, in order.
var UpstreamDatasets = []string{TaskTruthfulQA, TaskBBQ, TaskToxiGen}

// UpstreamsFor returns the upstreams of the named datasets (nil: all), or
// an error naming an unknown one.
func UpstreamsFor(names []string) ([]Upstream, error) {
	all := Upstreams()
	if len(names) == 0 {
		return all, nil
	}
	want := map[string]bool{}
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		ok := false
		for _, d := range UpstreamDatasets {
			ok = ok || d == n
		}
		if !ok {
			return nil, fmt.Errorf("unknown dataset %q (want %s)", n, strings.Join(UpstreamDatasets, ", "))
		}
		want[n] = true
	}
	var out []Upstream
	for _, u := range all {
		if want[u.Dataset] {
			out = append(out, u)
		}
	}
	return out, nil
}

// DataDir returns the evaluation data directory: $MATSTEER_DATA when set
// (local is true: a copy of the user's, used as it is), else the "data"
// folder of the cache (models.CacheDir), where Pull puts the upstream
// files.
func DataDir() (dir string, local bool) {
	if d := os.Getenv(DataEnv); d != "" {
		return d, true
	}
	return filepath.Join(models.CacheDir(), "data"), false
}

// fileURL is the raw-file URL of an upstream file.
func fileURL(base string, u Upstream, f UpstreamFile) string {
	segs := strings.Split(f.Upstream, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.TrimRight(base, "/") + "/" + u.Repo + "/" + url.PathEscape(u.Ref) + "/" + strings.Join(segs, "/")
}

// PullOptions control Pull.
type PullOptions struct {
	// Fetcher downloads (nil: a plain one); its Progress and Log are used.
	Fetcher *models.Fetcher
	// Base replaces DefaultUpstreamBase (a mirror with the same layout, or
	// a test server).
	Base string
	// Datasets limits the pull to these datasets (nil: all).
	Datasets []string
	// Stall abandons a file that receives nothing for this long (0:
	// models.DefaultStallTimeout).
	Stall time.Duration
	// Log receives one line per file fetched (nil: none).
	Log io.Writer
}

// PullResult counts what Pull did.
type PullResult struct {
	Fetched, Present int
}

// Pull makes dir hold every upstream file of the chosen datasets, in the
// layout of the shared copy (dir/truthfulqa, dir/bbq, dir/toxigen): a file
// already there with the pinned size and SHA-256 is kept, every other one
// is downloaded into a temporary file, checked and renamed into place
// (models.Fetcher.Download), so an interrupted or failed pull leaves
// complete, verified files only, and the next pull continues. Every file
// is tried; the error lists the ones that failed.
func Pull(ctx context.Context, dir string, o PullOptions) (PullResult, error) {
	ups, err := UpstreamsFor(o.Datasets)
	if err != nil {
		return PullResult{}, err
	}
	return pullUpstreams(ctx, dir, ups, o)
}

func pullUpstreams(ctx context.Context, dir string, ups []Upstream, o PullOptions) (PullResult, error) {
	var res PullResult
	f := o.Fetcher
	if f == nil {
		f = &models.Fetcher{}
	}
	base := o.Base
	if base == "" {
		base = DefaultUpstreamBase
	}
	var errs []error
	for _, u := range ups {
		for _, file := range u.Files {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			r := models.Remote{URL: fileURL(base, u, file), Path: filepath.Join(dir, u.Dataset, filepath.FromSlash(file.Path)), Size: file.Size, SHA256: file.SHA256}
			fetched, err := f.Download(ctx, r, o.Stall)
			switch {
			case err != nil && ctx.Err() != nil:
				return res, ctx.Err()
			case errors.Is(err, models.ErrUnreachable):
				// Every other file is on the same host: stop here.
				errs = append(errs, fmt.Errorf("%s/%s: %w", u.Dataset, file.Path, err))
				return res, fmt.Errorf("data pull: %w\n(stopped: the server is not reachable; set $%s to a local copy, or use a mirror)", errors.Join(errs...), DataEnv)
			case err != nil:
				errs = append(errs, fmt.Errorf("%s/%s: %w", u.Dataset, file.Path, err))
			case fetched:
				res.Fetched++
				if o.Log != nil {
					fmt.Fprintf(o.Log, "fetched %s/%s (%s@%s)\n", u.Dataset, file.Path, u.Repo, shortRef(u.Ref))
				}
			default:
				res.Present++
			}
		}
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("data pull: %d of %d files failed:\n%w", len(errs), res.Fetched+res.Present+len(errs), errors.Join(errs...))
	}
	return res, nil
}

func shortRef(ref string) string {
	if len(ref) == 40 {
		return ref[:12]
	}
	return ref
}

// FileProblem is an upstream file that a data directory lacks or holds
// with other contents.
type FileProblem struct {
	Path    string // under the data directory
	Missing bool
	Err     error
}

// VerifyData checks dir against the pinned files of the chosen datasets
// (nil: all) and returns the files that are missing or differ.
func VerifyData(dir string, datasets []string) ([]FileProblem, error) {
	ups, err := UpstreamsFor(datasets)
	if err != nil {
		return nil, err
	}
	var out []FileProblem
	for _, u := range ups {
		for _, file := range u.Files {
			rel := filepath.Join(u.Dataset, filepath.FromSlash(file.Path))
			if ok, err := models.VerifyFile(filepath.Join(dir, rel), file.Size, file.SHA256); !ok {
				out = append(out, FileProblem{Path: rel, Missing: errors.Is(err, os.ErrNotExist), Err: err})
			}
		}
	}
	return out, nil
}
