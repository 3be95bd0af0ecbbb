// Triggered on calc.* : the function sees the concrete subject (calc.add, calc.mul).
(subject, payload) => {
  const [a, b] = JSON.parse(new TextDecoder().decode(payload));
  const op = subject.split('.').pop();
  if (op === 'add') return { result: a + b };
  if (op === 'mul') return { result: a * b };
  throw new Error(`unknown operation ${op}`);
};
