// Call-heavy compute guest for the fuel tests and benchmark: naive recursive
// Fibonacci, dominated by call and return overhead.
__attribute__((export_name("fib"))) int fib(int n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}
