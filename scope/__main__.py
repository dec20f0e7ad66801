"""``python -m scope``: the same command line as ``scope``."""

from scope.launch import main

if __name__ == "__main__":
    main()
