from plastix.sims.cli import main

raise SystemExit(main())
