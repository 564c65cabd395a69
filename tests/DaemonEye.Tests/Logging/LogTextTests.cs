using DaemonEye.Logging;
using Microsoft.Extensions.Time.Testing;

namespace DaemonEye.Tests.Logging;

/// <summary>Text a peer chose, made safe for one log line; the budget of log lines.</summary>
public sealed class LogTextTests
{
    [Theory]
    [InlineData("procmond", "procmond")]
    [InlineData("évènement-客户端", "évènement-客户端")]
    [InlineData("a\nFAKE 12:00:00 INF forged", @"a\nFAKE 12:00:00 INF forged")]
    [InlineData("cr\rlf\n tab\t nul\0", @"cr\rlf\n tab\t nul\0")]
    [InlineData("\u001b[31mred\u001b[0m", @"\x1B[31mred\x1B[0m")]
    [InlineData("bell\u0007 del\u007f c1\u009b", @"bell\x07 del\x7F c1\x9B")]
    [InlineData("admin\u202Etxt.exe", @"admin\u202Etxt.exe")]
    [InlineData("lri\u2066x\u2069 zwsp\u200B bom\uFEFF lrm\u200E", @"lri\u2066x\u2069 zwsp\u200B bom\uFEFF lrm\u200E")]
    [InlineData("line\u2028para\u2029", @"line\u2028para\u2029")]
    [InlineData("tag\U000E0041 emoji\U0001F600", @"tag\U000E0041 emoji" + "\U0001F600")]
    [InlineData(@"already \x1B escaped \n", @"already \x1B escaped \n")]
    public void Unsafe_characters_become_visible_escapes_and_safe_text_is_kept(string text, string expected)
    {
        var escaped = LogText.Escape(text);

        Assert.Equal(expected, escaped);
        Assert.DoesNotContain(escaped, c => char.IsControl(c) || System.Globalization.CharUnicodeInfo.GetUnicodeCategory(c) is System.Globalization.UnicodeCategory.Format
            or System.Globalization.UnicodeCategory.LineSeparator or System.Globalization.UnicodeCategory.ParagraphSeparator);
        Assert.Equal(escaped, LogText.Escape(escaped)); // escaping twice is escaping once
    }

    [Fact]
    public void A_lone_surrogate_is_escaped_and_a_pair_is_kept()
    {
        // Built at run time: an attribute's string cannot carry a lone surrogate.
        var text = "lone" + (char)0xD800 + "x" + (char)0xDC00 + "\U0001F600";
        Assert.Equal(@"lone\uD800x\uDC00" + "\U0001F600", LogText.Escape(text));
    }

    [Fact]
    public void Safe_text_is_returned_as_it_is_without_a_copy()
    {
        var text = "cli-4242";
        Assert.Same(text, LogText.Escape(text));
        Assert.Equal(string.Empty, LogText.Escape(null));
    }

    [Fact]
    public void Long_text_is_capped_with_the_count_of_what_was_left_out()
    {
        var version = new string('v', 900 * 1024);

        var escaped = LogText.Escape(version);

        Assert.True(escaped.Length <= LogText.DefaultMaxLength, $"{escaped.Length} chars");
        Assert.StartsWith(new string('v', 200), escaped, StringComparison.Ordinal);
        Assert.EndsWith($"…[+{version.Length - (LogText.DefaultMaxLength - 24)} chars]", escaped, StringComparison.Ordinal);
        Assert.Equal(escaped, LogText.Escape(escaped));
    }

    [Fact]
    public void The_cap_counts_escapes_and_never_cuts_one_in_half()
    {
        var text = string.Concat(Enumerable.Repeat("\u001b", 100));

        var escaped = LogText.Escape(text, 64);

        Assert.True(escaped.Length <= 64);
        var kept = escaped[..escaped.IndexOf('…', StringComparison.Ordinal)];
        Assert.Equal(0, kept.Length % 4); // whole \x1B escapes only
        Assert.EndsWith($"…[+{100 - (kept.Length / 4)} chars]", escaped, StringComparison.Ordinal);
    }

    [Fact]
    public void Untrusted_formats_escaped_and_capped()
    {
        Untrusted id = "x\ny";
        UntrustedLine line = new string('l', 5000);

        Assert.Equal(@"x\ny", id.ToString());
        Assert.Equal(@"x\ny", $"{id}");
        Assert.True(line.ToString().Length is > LogText.DefaultMaxLength and <= LogText.LineMaxLength);
    }

    [Fact]
    public void The_rate_limiter_allows_its_budget_per_window_and_reports_what_it_suppressed_once()
    {
        var time = new FakeTimeProvider();
        var limiter = new LogRateLimiter(time, 3, TimeSpan.FromSeconds(10));

        var allowed = Enumerable.Range(0, 10).Count(_ => limiter.TryAcquire(out var earlier) && earlier == 0);
        Assert.Equal(3, allowed);
        Assert.Equal(7, limiter.Pending);
        Assert.Equal(0, limiter.TakeSuppressed()); // the window has not ended: reported later

        time.Advance(TimeSpan.FromSeconds(10));
        Assert.True(limiter.TryAcquire(out var suppressed));
        Assert.Equal(7, suppressed);
        Assert.False(limiter.TryAcquire(out _) && limiter.TryAcquire(out _) && limiter.TryAcquire(out _));
        Assert.Equal(1, limiter.TakeSuppressed(closing: true));
        Assert.Equal(0, limiter.Pending);

        time.Advance(TimeSpan.FromSeconds(10));
        Assert.True(limiter.TryAcquire(out suppressed));
        Assert.Equal(0, suppressed);
    }

    [Fact]
    public void A_timer_can_report_the_suppressed_count_once_the_window_ended()
    {
        var time = new FakeTimeProvider();
        var limiter = new LogRateLimiter(time, 1, TimeSpan.FromSeconds(5));
        Assert.True(limiter.TryAcquire(out _));
        Assert.False(limiter.TryAcquire(out _));
        Assert.False(limiter.TryAcquire(out _));

        time.Advance(TimeSpan.FromSeconds(4.9));
        Assert.Equal(0, limiter.TakeSuppressed());
        time.Advance(TimeSpan.FromSeconds(0.1));
        Assert.Equal(2, limiter.TakeSuppressed());
        Assert.Equal(0, limiter.TakeSuppressed());
    }
}
