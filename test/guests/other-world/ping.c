__attribute__((export_name("ping"))) unsigned ping(void) { return 42; }
