-- spec/support/dns.lua: DNS for nginx's `resolver`, a stub on 127.0.0.1.
return function(helper)
local q, read_file, write_file = helper.shell_quote, helper.read_file, helper.write_file

-- DNS for nginx's `resolver`: a stub on 127.0.0.1 answering every A query
-- with 127.0.0.1 (and no address for other types), so that a host name like
-- `localhost` -- which a test certificate names -- resolves inside nginx.
-- SILENT=1: names whose first label starts with "nx" do not exist
-- (NXDOMAIN) and every other query goes unanswered (a resolver that never
-- answers).  perl-base is part of every Debian system; the stub exits after
-- 10 minutes.
local DNS_STUB = [[
use strict; use IO::Socket::INET;
my $silent = $ENV{SILENT};
my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'udp') or die "socket: $!";
$| = 1; print "port ", $s->sockport, "\n";
my $end = time + 600;
while (time < $end) {
  my $rin = ''; vec($rin, fileno($s), 1) = 1;
  next unless select(my $rout = $rin, undef, undef, 1);
  my $q; my $peer = $s->recv($q, 512); next unless defined $peer && length($q) > 14;
  if ($silent) {
    next unless substr($q, 13, 2) eq 'nx';
    $s->send(pack('n6', unpack('n', $q), 0x8183, 1, 0, 0, 0) . substr($q, 12), 0, $peer);
    next;
  }
  my $o = 12; while ($o < length $q) { my $l = ord substr($q, $o, 1); $o += 1 + $l; last unless $l; }
  next if $o + 4 > length $q;
  my $qtype = unpack 'n', substr($q, $o, 2);
  my $an = $qtype == 1 ? 1 : 0;
  my $r = pack('n6', unpack('n', $q), 0x8180, 1, $an, 0, 0) . substr($q, 12, $o + 4 - 12);
  $r .= pack('n3Nn', 0xC00C, 1, 1, 60, 4) . pack('C4', 127, 0, 0, 1) if $an;
  $s->send($r, 0, $peer);
}
]]

-- helper.start_dns(opts?) -> {port, pid, stop}; opts.silent: the stub
-- that answers only "nx..." names, with NXDOMAIN.
function helper.start_dns(opts)
  local script, out = os.tmpname(), os.tmpname()
  write_file(script, DNS_STUB)
  local env = opts and opts.silent and "SILENT=1 " or ""
  local pid = helper.spawn(env .. "exec perl " .. q(script) .. " >" .. q(out) .. " 2>&1 </dev/null")
  assert(pid, "could not start the DNS stub")
  local dns = { pid = pid }
  function dns.stop()
    helper.stop(pid)
    os.remove(script)
    os.remove(out)
  end
  for _ = 1, 100 do
    local port = (read_file(out) or ""):match("port (%d+)")
    if port then
      dns.port = tonumber(port)
      return dns
    end
    if not helper.alive(pid) then break end
    helper.sleep(0.05)
  end
  local why = read_file(out) or ""
  dns.stop()
  error("DNS stub did not start: " .. why, 2)
end

end
