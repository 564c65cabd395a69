using System.Diagnostics;

namespace DaemonEye.Fsmond.Tests;

/// <summary>
/// A real process making the changes: perl, reading one command a line from its stdin and
/// answering "ok" when the change is done, so each step is a phase barrier. Killed on dispose.
/// </summary>
internal sealed class Writer : IDisposable
{
    private const string Script = """
        use Fcntl; $| = 1;
        while (<STDIN>) {
          chomp; my @a = split / /;
          if ($a[0] eq 'create') { sysopen(my $f, $a[1], O_WRONLY|O_CREAT|O_EXCL) or die "create: $!"; close $f }
          elsif ($a[0] eq 'write') { open(my $f, '>>', $a[1]) or die "write: $!"; print $f $a[2]; close $f }
          elsif ($a[0] eq 'rename') { rename($a[1], $a[2]) or die "rename: $!" }
          elsif ($a[0] eq 'chmod') { chmod(oct($a[1]), $a[2]) or die "chmod: $!" }
          elsif ($a[0] eq 'delete') { unlink($a[1]) or die "delete: $!" }
          elsif ($a[0] eq 'burst') { for my $i (1..$a[2]) { sysopen(my $f, "$a[1]/f$i", O_RDONLY|O_CREAT) or die "burst: $!"; close $f } }
          print "ok\n";
        }
        """;

    private readonly Process _process;

    public Writer()
    {
        var start = new ProcessStartInfo("/usr/bin/perl") { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
        start.ArgumentList.Add("-e");
        start.ArgumentList.Add(Script);
        _process = Process.Start(start)!;
    }

    public int Pid => _process.Id;

    public async Task DoAsync(string command)
    {
        await _process.StandardInput.WriteLineAsync(command);
        await _process.StandardInput.FlushAsync();
        var answer = await _process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(120));
        Assert.True(answer == "ok", $"perl: '{command}' answered '{answer}'");
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }

        _process.Dispose();
    }
}
