# Sourced by the tools/device_*.sh scripts on the GPU machine: which commit this copied tree is, so that
# the rows name it. The device tool copies the working tree but not .git (and the machine may hold a
# stale .git of its own, whose HEAD is some other commit), so the caller says, in one of two ways:
#   - carry a bundle (carry: [".regression/repo.bundle"]), made here after committing:
#       git bundle create .regression/repo.bundle main [other branches an A/B needs]
#     the tree becomes a repository at main again (its files untouched) and git status says if it differs;
#   - or write the sha out: ZO2BENCH_GIT_COMMIT=<40 hex digits> (a `$(git rev-parse HEAD)` in the device
#     command runs on the device, against that stale .git: it once named a commit that does not exist).
git config --global --add safe.directory '*'
if [ -f .regression/repo.bundle ]; then
  [ -d .git ] || git init -q
  git fetch -q --update-head-ok .regression/repo.bundle '+refs/heads/*:refs/heads/*' && git symbolic-ref HEAD refs/heads/main \
    && git reset -q && git status --short --untracked-files=no | head -5 && git log --oneline -1
  ZO2BENCH_GIT_COMMIT=$(git rev-parse HEAD)
  [ -z "$(git status --porcelain --untracked-files=no)" ] && ZO2BENCH_GIT_DIRTY=0 || ZO2BENCH_GIT_DIRTY=1
fi
[[ "${ZO2BENCH_GIT_COMMIT:-}" =~ ^[0-9a-f]{40}$ ]] || {
  echo "$0: carry .regression/repo.bundle, or set ZO2BENCH_GIT_COMMIT to the commit (40 hex digits, written out)" >&2
  exit 2; }
export ZO2BENCH_GIT_COMMIT ZO2BENCH_GIT_DIRTY=${ZO2BENCH_GIT_DIRTY:-0}
echo "rows will name commit $ZO2BENCH_GIT_COMMIT (dirty=$ZO2BENCH_GIT_DIRTY)"
