// A Nex JavaScript function: `nex devrun examples/echofunction.js --trigger_subject js.echo`,
// then a request on js.echo with "heya" answers "heya". The subject is the real one (wildcards allowed).
(subject, payload) => {
  console.log(`triggered on ${subject} with ${payload.length} bytes`);
  return payload;
};
