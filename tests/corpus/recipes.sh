# Projects scope adds to the shared corpus (../shared/corpus), each for a trap
# the shared seven do not set.  Sourced by the shared lib/common.sh through the
# overlay tests/test_corpus.py builds, in place of the shared lib/recipes.sh,
# whose recipes stay available as shared_recipe.  The variables are those of
# the shared recipes (see its header); reference results: plain run, CPython
# 3.11.7, pytest 9.2.0.
# shellcheck disable=SC2034  # variables set here are used by the scripts

# shellcheck source=/dev/null
. "$SCOPE_CORPUS_SHARED_LIB/recipes.sh"
eval "shared_$(declare -f recipe)"

SCOPE_CORPUS_OWN="pyparsing decorator asgiref"
CORPUS_ALL="$CORPUS_ALL $SCOPE_CORPUS_OWN"

recipe() {
  SDIST_PROJECT=""; SDIST_VERSION=""; SDIST_SHA256=""
  DEPS=""; EDITABLE_OPTS=""; BUILD_ENV=""; IMPORTS=""; TEST_ENV=""; EXPECT=""
  TEST_ARGS=(); FULL_ARGS=()
  case "$1" in
  pyparsing)
    # Its _trim_arity predicts the line of its own call and compares it with a
    # traceback's to decide how many arguments a parse action takes.
    SDIST_PROJECT=pyparsing; SDIST_VERSION=3.3.3
    SDIST_SHA256=928ae7e20211f3b6f3915a72f06a0cfd29ab9d24279dd6346b6b1a7146397d36
    DEPS="railroad-diagrams jinja2"   # its "diagrams" extra
    IMPORTS="pyparsing"
    TEST_ARGS=(tests examples/tiny/tests)   # as its tox.ini's unit environment
    EXPECT="passed=2067 skipped=27" ;;   # the skipped ones want matplotlib
  decorator)
    # Signature-preserving decorators: each wrapper is source text compiled with
    # exec, around instrumented callers; doctests of its documentation.
    SDIST_PROJECT=decorator; SDIST_VERSION=5.3.1
    SDIST_SHA256=4cbcdd55a6efadb9dbea26b858f4fb3264567b52d69ca0d25b721b553f60ea82
    IMPORTS="decorator"
    TEST_ARGS=(tests/test.py)
    EXPECT="passed=25" ;;
  asgiref)
    # sync_to_async and async_to_sync: coroutines handed between event loops
    # and thread pools, contextvars and Local copied across them, garbage
    # collection checks of its locals.
    SDIST_PROJECT=asgiref; SDIST_VERSION=3.13.0
    SDIST_SHA256=034cc8cbf72d00553b4be256703ac545120b4e50af13b49dec99da899aeeecb4
    DEPS="pytest-asyncio"
    IMPORTS="asgiref"
    TEST_ARGS=(tests)
    EXPECT="passed=122 skipped=1 xfailed=1" ;;
  *)
    shared_recipe "$1"
    return ;;
  esac
  FULL_ARGS=("${TEST_ARGS[@]}")
  return 0
}
