from almanac.cli import main

# vLLM's engine starts its worker with spawn, which re-imports this module.
if __name__ == "__main__":
    main()
